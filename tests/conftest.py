"""Shared fixtures: the real MNIST test set and the application on a local Ray."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from clusterkit.localray import WEIGHTS, LocalRayCluster, ray_env, serve_config, single_node
from mnist_serve import data

TESTS = Path(__file__).parent
# Figures the tests measure (times, failed requests), printed at the end of the run.
FIGURES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, from the folder it lives in."""
    for item in items:
        layer = Path(item.fspath).relative_to(TESTS).parts[0]
        item.add_marker(getattr(pytest.mark, layer))


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report():
    """Record a measured figure for the end-of-run summary (and the closing notes)."""
    return FIGURES.append


@pytest.fixture(scope="session")
def mnist_test() -> data.MNIST:
    return data.load("test")


@pytest.fixture(scope="session")
def cluster() -> LocalRayCluster:
    if not WEIGHTS.is_file():
        pytest.fail(f"no trained weights at {WEIGHTS}: run `make model` (make test does)")
    # The shipped environment, but a replaced ingress replica drains for 2 s rather than
    # Ray's 30 s margin for external load balancers: HAProxy here is local and reloads at once.
    env = {**ray_env(), "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
    cluster = LocalRayCluster(single_node(env))
    cluster.start()
    try:
        cluster.deploy(serve_config(cluster.ports))
        cluster.wait_running()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def base_url(cluster: LocalRayCluster) -> str:
    return cluster.serve_url


@pytest.fixture
def redeploy(cluster: LocalRayCluster):
    """Deploy a changed serve config for one test; the original is restored after."""

    def apply(change) -> dict:
        config = serve_config(cluster.ports)
        change(config)
        started = time.time()
        cluster.deploy(config)
        return cluster.wait_running(since=started)

    yield apply
    started = time.time()
    cluster.deploy(serve_config(cluster.ports))
    cluster.wait_running(since=started)
    assert requests.get(f"{cluster.serve_url}/health", timeout=10).ok
