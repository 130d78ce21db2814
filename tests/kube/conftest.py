"""Against the real KubeRay operator on a real cluster: the one-node cluster of `make kube-up`
(make kube-test) or a kind cluster (make kind-test), as clusterkit.kube.target chooses. The chart
is installed and its RayService Ready before these tests start."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from string import Template

import pytest
from kubernetes import client

from clusterkit import kuberay
from clusterkit.kube import release, target

# The tests share one release and each changes it: from the freshly installed chart, through
# rollouts that keep it serving, to the head-HA cluster last.
# The NetworkPolicy tests come first after the pods: the release as installed, before any rollout.
# Token auth and the incremental upgrade come last: each starts a cluster of its own values.
ORDER = [
    "test_pods",
    "test_network_policy",
    "test_rayservice",
    "test_rollouts",
    "test_plan_against_operator",
    "test_head_pod_loss",
    "test_auth_token",
    "test_incremental_upgrade",
]


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


def ray_start(container: client.V1Container) -> dict[str, str]:
    """A Ray container's `ray start` flags (KubeRay runs `bash -c "ulimit ...; ray start ..."`)."""
    line = " ".join([*(container.command or []), *(container.args or [])])
    words = shlex.split(line.split("ray start", 1)[1].split(";")[0].split("&&")[0])
    params: dict[str, str] = {}
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        key, sep, value = word[2:].partition("=")
        if not sep:
            following = words[i + 1] if i + 1 < len(words) else "--"
            value = "true" if following.startswith("--") else following
        params[key] = value
    return params


def container_env(container: client.V1Container, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The environment the container's process sees: values, and secretKeyRefs resolved through
    `secrets` ({(secret, key): value}); references to the pod itself (fieldRef) are left out."""
    env = {}
    for var in container.env or []:
        ref = var.value_from.secret_key_ref if var.value_from else None
        if var.value is not None:
            env[var.name] = var.value
        elif ref is not None:
            env[var.name] = secrets[(ref.name, ref.key)]
    return env


def group_of(pod: client.V1Pod) -> str:
    """The pod's group as the imitation names it: "head" (KubeRay labels it "headgroup") or the
    worker group's name."""
    labels = pod.metadata.labels
    return "head" if labels["ray.io/node-type"] == "head" else labels["ray.io/group"]


@pytest.fixture(scope="session")
def pods_against_imitation(core) -> Callable[[dict[tuple[str, str], str]], list[str]]:
    """`pods_against_imitation(secrets)`: the active cluster's pods as the operator made them
    against what `clusterkit.kuberay` derives from the installed release (`secrets` resolves the
    Secrets it refers to): as many per group, the same `ray start` flags, the imitation's
    environment, and on the head the GCS fault tolerance annotations KubeRay writes beside that
    environment (common/pod.go, configureGCSFaultTolerance). One line per group, for the report."""

    def compare(secrets: dict[tuple[str, str], str]) -> list[str]:
        cluster_name, _ = release.clusters()
        cluster = client.CustomObjectsApi(core.api_client).get_namespaced_custom_object(
            "ray.io", "v1", release.NAMESPACE, "rayclusters", cluster_name
        )
        derived = kuberay.nodes(release.rendered(), secrets, cluster_uid=cluster["metadata"]["uid"])
        selector = f"ray.io/cluster={cluster_name}"
        pods = [
            pod
            for pod in core.list_namespaced_pod(release.NAMESPACE, label_selector=selector).items
            if pod.metadata.deletion_timestamp is None
        ]
        counts = Counter(group_of(pod) for pod in pods)
        assert counts == Counter(node.group for node in derived), counts
        nodes = {node.group: node for node in derived}
        lines = {}
        for pod in pods:
            group = group_of(pod)
            node = nodes[group]
            (container,) = [c for c in pod.spec.containers if c.name.startswith("ray-")]
            env = container_env(container, secrets)
            # The pod's shell expands what KubeRay passes as "$REDIS_PASSWORD"; the imitation passes
            # the value itself.
            real = {key: Template(value).safe_substitute(env) for key, value in ray_start(container).items()}
            if node.is_head:
                assert real.pop("head") == "true"  # the imitation's Node.is_head
            else:
                # The one flag the fast layer sets itself: the head's address (here a headless Service).
                assert real.pop("address").startswith(f"{cluster_name}-head-svc."), real
            assert real == node.params, {"operator": real, "imitation": node.params}
            assert {k: env.get(k) for k in node.env} == node.env
            added = ", ".join(sorted(set(env) - set(node.env)))
            lines[group] = f"{group}: ray start flags equal; env the operator adds: {added}"
            if node.is_head:
                annotations = pod.metadata.annotations or {}
                fault_tolerant = "RAY_REDIS_ADDRESS" in node.env
                assert annotations.get("ray.io/ft-enabled") == str(fault_tolerant).lower(), annotations
                if fault_tolerant:
                    namespace = annotations.get("ray.io/external-storage-namespace")
                    assert namespace == node.env["RAY_external_storage_namespace"], annotations
                lines[group] += f"; ray.io/ft-enabled={annotations['ray.io/ft-enabled']}"
        return [lines[group] for group in sorted(lines)]

    return compare
