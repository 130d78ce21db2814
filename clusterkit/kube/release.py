"""The chart on the one-node cluster: the project's image imported into its containerd (no registry),
`helm install mnist-serve charts/ -f charts/ci/kind-values.yaml` with the pinned helm, and a wait on
the `Ready` condition the KubeRay operator sets on the RayService."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from clusterkit import helmchart, standin
from clusterkit.kube import cluster
from clusterkit.podman import podman

NAMESPACE = "mnist-serve"
RELEASE = "mnist-serve"
VALUES = cluster.REPO / "charts" / "ci" / "kind-values.yaml"


def api() -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.KUBECONFIG))


def import_image(tag: str) -> float:
    """podman's `tag` into the cluster's containerd, unless this very build is there already (a
    marker tag names podman's image ID: the tag alone may be an older build); seconds it took."""
    image_id = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    marker = f"{tag.rsplit(':', 1)[0]}:podman-{image_id[:12]}"
    if marker in cluster.ctr("images", "ls", "-q").stdout.split():
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        archive = Path(tmp) / "image.tar"
        podman("save", "--format", "oci-archive", "-o", str(archive), tag, timeout=1800)
        cluster.ctr("images", "import", str(archive))
    cluster.ctr("images", "tag", "--force", tag, marker)
    return time.monotonic() - started


def operator_version() -> str:
    """The operator kube-up runs (the pinned module), as the chart's kuberay.operatorVersion."""
    return cluster.go_version("kuberay", "github.com/ray-project/kuberay/ray-operator").lstrip("v")


def sets(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The values this cluster sets on top of VALUES (helm --set-json), with `extra`."""
    repository, tag = standin.IMAGE.rsplit(":", 1)
    ours = {"image.repository": repository, "image.tag": tag, "kuberay.operatorVersion": operator_version()}
    return {key: json.dumps(value) for key, value in ours.items()} | (extra or {})


def install(extra: dict[str, str] | None = None, chart: Path = helmchart.CHART) -> None:
    """`helm upgrade --install` of `chart` with VALUES and `sets(extra)`."""
    args = ["upgrade", "--install", RELEASE, str(chart), "--namespace", NAMESPACE]
    args += ["--create-namespace", "--values", str(VALUES), "--kubeconfig", str(cluster.KUBECONFIG)]
    for key, value in sets(extra).items():
        args += ["--set-json", f"{key}={value}"]
    result = subprocess.run([str(helmchart.HELM), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:3])} failed: {result.stderr.strip()}")


def rendered() -> dict:
    """The RayService as the installed release renders it (`helm get values`, then `helm template`)."""
    args = ["get", "values", RELEASE, "--namespace", NAMESPACE, "--output", "json"]
    values = json.loads(helmchart.helm(*args, "--kubeconfig", str(cluster.KUBECONFIG)).stdout)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        json.dump(values, file)
        file.flush()
        return helmchart.rayservice(helmchart.render(Path(file.name)))


def rayservice(name: str = RELEASE) -> dict:
    return client.CustomObjectsApi(api()).get_namespaced_custom_object(
        "ray.io", "v1", NAMESPACE, "rayservices", name
    )


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def clusters(name: str = RELEASE) -> tuple[str, str]:
    """The RayService's active and pending RayCluster names ("" for none)."""
    status = rayservice(name).get("status", {})
    return tuple(
        status.get(key, {}).get("rayClusterName", "")
        for key in ("activeServiceStatus", "pendingServiceStatus")
    )


def ray_clusters() -> list[str]:
    objs = client.CustomObjectsApi(api()).list_namespaced_custom_object(
        "ray.io", "v1", NAMESPACE, "rayclusters"
    )
    return [obj["metadata"]["name"] for obj in objs["items"]]


def app_status(app: str = "mnist", name: str = RELEASE) -> str:
    """The status the operator reports for `app` on the active cluster."""
    apps = rayservice(name).get("status", {}).get("activeServiceStatus", {}).get("applicationStatuses", {})
    return apps.get(app, {}).get("status", "")


def pods(node_type: str, name: str = RELEASE) -> list[client.V1Pod]:
    """The active cluster's pods of `node_type` (head or worker), terminating ones included."""
    active, _ = clusters(name)
    selector = f"ray.io/cluster={active},ray.io/node-type={node_type}"
    return client.CoreV1Api(api()).list_namespaced_pod(NAMESPACE, label_selector=selector).items


def ready_pods(node_type: str, name: str = RELEASE) -> set[str]:
    """Names of the active cluster's `node_type` pods that are Ready and not terminating."""
    return {
        pod.metadata.name
        for pod in pods(node_type, name)
        if pod.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    }


def head_ip(name: str = RELEASE) -> str:
    """The pod IP of the active cluster's live head (its dashboard listens there on 8265)."""
    (ip,) = [pod.status.pod_ip for pod in pods("head", name) if pod.metadata.deletion_timestamp is None]
    return ip


def wait_ready(timeout_s: float = 900, name: str = RELEASE) -> float:
    """Seconds until the operator sets `Ready=True` on the RayService."""

    def ready() -> bool:
        return condition(rayservice(name), "Ready").get("status") == "True"

    return cluster.wait_for(f"RayService {name} Ready", ready, timeout_s, interval=2)


def up() -> None:
    t0 = time.monotonic()
    tag = standin.image()
    print(f"[kube] image {tag} built (or cached) in {time.monotonic() - t0:.0f} s")
    print(f"[kube] imported into containerd in {import_image(tag):.0f} s")
    install()
    ready = wait_ready()
    status = rayservice()["status"]
    apps = status.get("activeServiceStatus", {}).get("applicationStatuses", {})
    print(
        f"[kube] RayService Ready {ready:.0f} s after helm install; apps: "
        + ", ".join(f"{app} {s.get('status')}" for app, s in apps.items())
    )


if __name__ == "__main__":
    up()
