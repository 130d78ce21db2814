"""Scenario 3, Serve autoscaling: under load the Classifier scales up to its bound, and back
down once the load stops; no request fails on the way."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clusterkit.helmchart import CI_VALUES
from clusterkit.load import Load, failed, summary

VALUES = [CI_VALUES / "kind-values.yaml", Path(__file__).parent / "values" / "autoscaling-values.yaml"]
pytestmark = pytest.mark.composed("these values autoscale the Classifier; a fused app has only the Ingress")


@pytest.fixture(scope="module")
def run(bring_up):
    with bring_up(*VALUES) as run:
        yield run


def wait_replicas(run, count: int, timeout_s: float) -> float:
    """Seconds until the Classifier has `count` running replicas."""
    started = time.monotonic()
    while len(run.placement()["Classifier"]) != count:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"Classifier at {run.placement()['Classifier']} replicas, not {count}, after {timeout_s}s"
            )
        time.sleep(0.5)
    return time.monotonic() - started


def test_classifier_scales_up_under_load_and_down_after(run, mnist_test, report):
    assert len(run.placement()["Classifier"]) == 1
    with Load(run.cluster.serve_url, mnist_test.images, mnist_test.labels, clients=32) as load:
        up = wait_replicas(run, 3, timeout_s=120)
        load.wait_for(200)
    down = wait_replicas(run, 1, timeout_s=120)
    outcomes = load.between()
    report(
        f"serve autoscaling: Classifier 1 -> 3 replicas {up:.1f} s into the load, "
        f"3 -> 1 {down:.1f} s after it; {summary(outcomes)}"
    )
    assert failed(outcomes) == []
