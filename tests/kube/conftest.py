"""Against the real KubeRay operator on a real cluster: the one-node cluster of `make kube-up`
(make kube-test) or a kind cluster (make kind-test), as clusterkit.kube.target chooses. The chart
is installed and its RayService Ready before these tests start."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from clusterkit.kube import release, target

# The tests share one release and each changes it: from the freshly installed chart, through
# rollouts that keep it serving, to the head-HA cluster last.
ORDER = ["test_pods", "test_rayservice", "test_rollouts", "test_plan_against_operator", "test_head_pod_loss"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    items.sort(key=lambda item: ORDER.index(item.path.stem) if item.path.parent == here else -1)


@pytest.fixture(scope="session")
def api() -> client.ApiClient:
    kubeconfig = target.current().kubeconfig
    if not kubeconfig.is_file():
        pytest.fail(
            f"no cluster ({kubeconfig} is missing): `make kube-test` or `make kind-test` bring one up"
        )
    return release.api()


@pytest.fixture(scope="session")
def core(api) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def serve_url(core) -> str:
    """The serve Service, by its cluster IP: kube-proxy's rules take this machine's requests there
    (on kind, through the routes clusterkit.kind.cluster adds via the node)."""
    svc = core.read_namespaced_service(f"{release.RELEASE}-serve-svc", release.NAMESPACE)
    return f"http://{svc.spec.cluster_ip}:8000"
