"""Against the real KubeRay operator on the one-node cluster `make kube-up` brought up (make
kube-test): the chart is installed and its RayService Ready before these tests start."""

from __future__ import annotations

import pytest
from kubernetes import client

from clusterkit.kube import cluster, release


@pytest.fixture(scope="session")
def api() -> client.ApiClient:
    if not cluster.KUBECONFIG.is_file():
        pytest.fail(f"no cluster ({cluster.KUBECONFIG} is missing): run `make kube-test`, which brings it up")
    return release.api()


@pytest.fixture(scope="session")
def core(api) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def serve_url(core) -> str:
    """The serve Service, by its cluster IP: kube-proxy's rules take the host's requests there."""
    svc = core.read_namespaced_service(f"{release.RELEASE}-serve-svc", release.NAMESPACE)
    return f"http://{svc.spec.cluster_ip}:8000"
