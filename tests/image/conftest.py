"""The image built and run with podman, the way KubeRay runs it, on a locally made Ray base
(`clusterkit.standin`: no registry is reachable here)."""

from __future__ import annotations

import shutil

import pytest

from clusterkit import standin


@pytest.fixture(scope="session")
def image() -> str:
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        pytest.fail("podman or debootstrap is missing: `make test-image` installs them with apt")
    return standin.image()
