"""Every values scenario rendered once per session, for the tests that only read the objects."""

from __future__ import annotations

import pytest

from clusterkit.helmchart import SCENARIOS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: render(values) for name, values in SCENARIOS.items()}
