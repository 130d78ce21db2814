"""The chart on a real cluster (clusterkit.kube.target: `make kube-up`'s or kind's): the project's
image loaded into its containerd (no registry), `helm install mnist-serve charts/ -f
charts/ci/kind-values.yaml` with the pinned helm, and a wait on the `Ready` condition the KubeRay
operator sets on the RayService.

    python -m clusterkit.kube.release up      # image, install, Ready (make kube-up)
    python -m clusterkit.kube.release image   # the stand-in image into the cluster (kind-load KIND_LOCAL=1)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from clusterkit import helmchart, standin
from clusterkit.kube import target
from clusterkit.kube.addons import OPERATOR_NAMESPACE
from clusterkit.kube.layout import REPO
from clusterkit.podman import podman
from clusterkit.poll import wait_for

NAMESPACE = "mnist-serve"
RELEASE = "mnist-serve"
VALUES = REPO / "charts" / "ci" / "kind-values.yaml"
# What a cluster's bring-up installs the release with on top of VALUES, and every upgrade keeps.
BASE = ("image.repository", "image.tag", "kuberay.operatorVersion")


def api() -> client.ApiClient:
    return config.new_client_from_config(config_file=str(target.current().kubeconfig))


def import_image(tag: str) -> float:
    """podman's `tag` into the cluster's containerd, unless this very build is there already (a
    marker tag names podman's image ID: the tag alone may be an older build); seconds it took."""
    node = target.current()
    image_id = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    marker = f"{tag.rsplit(':', 1)[0]}:podman-{image_id[:12]}"
    if marker in node.ctr("images", "ls", "-q").stdout.split():
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        archive = Path(tmp) / "image.tar"
        podman("save", "--format", "oci-archive", "-o", str(archive), tag, timeout=1800)
        node.load_archive(archive)
    node.ctr("images", "tag", "--force", tag, marker)
    return time.monotonic() - started


def operator_version() -> str:
    """The version of the KubeRay operator running in the cluster (its image's tag)."""
    deployments = client.AppsV1Api(api()).list_namespaced_deployment(
        OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=kuberay-operator"
    )
    (deployment,) = deployments.items
    (container,) = deployment.spec.template.spec.containers
    return container.image.rsplit(":", 1)[1].lstrip("v")


def installed_values() -> dict:
    """The values the release was installed with (helm's user-supplied values)."""
    args = ["get", "values", RELEASE, "--namespace", NAMESPACE, "--output", "json"]
    return json.loads(helmchart.helm(*args, "--kubeconfig", str(target.current().kubeconfig)).stdout) or {}


def base_values() -> dict[str, str]:
    """BASE as the installed release has them (helm --set-json form)."""
    values, out = installed_values(), {}
    for key in BASE:
        node = values
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[key] = json.dumps(node)
    return out


def sets(extra: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The values set on top of VALUES (helm --set-json): the installed release's BASE (or `base`),
    then `extra`."""
    return (base_values() if base is None else base) | (extra or {})


def install(
    extra: dict[str, str] | None = None,
    chart: Path = helmchart.CHART,
    base: dict[str, str] | None = None,
    values: Path = VALUES,
) -> None:
    """`helm upgrade --install` of `chart` with `values` and `sets(extra, base)`. Helm 4 applies
    server-side, and KubeRay 1.7 adds its finalizer to the RayService with a full update (#4807,
    rayservice_controller.go Reconcile), which makes the operator a manager of the atomic list
    rayClusterConfig.workerGroupSpecs: without --force-conflicts every later upgrade is refused
    ("conflict with "kuberay-operator" ... .spec.rayClusterConfig.workerGroupSpecs")."""
    args = ["upgrade", "--install", RELEASE, str(chart), "--namespace", NAMESPACE, "--force-conflicts"]
    args += ["--create-namespace", "--values", str(values), "--kubeconfig", str(target.current().kubeconfig)]
    for key, value in sets(extra, base).items():
        args += ["--set-json", f"{key}={value}"]
    result = subprocess.run([str(helmchart.HELM), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:3])} failed: {result.stderr.strip()}")


def tag_image(new_tag: str) -> str:
    """Tag the release's image as `new_tag` too, in the node's containerd (a new image tag
    without a new build); the new reference."""
    head = rendered()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    node = target.current()
    # containerd names an image pulled or loaded as mnist-serve:x docker.io/library/mnist-serve:x.
    refs = node.ctr("images", "ls", "-q").stdout.split()
    ref = next(r for r in refs if r == head["image"] or r.endswith("/" + head["image"]))
    new = f"{ref.rsplit(':', 1)[0]}:{new_tag}"
    node.ctr("images", "tag", "--force", ref, new)
    return new


def rendered() -> dict:
    """The RayService as the installed release renders it (`helm get values`, then `helm template`)."""
    values = installed_values()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        json.dump(values, file)
        file.flush()
        return helmchart.rayservice(helmchart.render(Path(file.name)))


def rayservice(name: str = RELEASE, namespace: str = NAMESPACE) -> dict:
    return client.CustomObjectsApi(api()).get_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayservices", name
    )


def observed(name: str = RELEASE, namespace: str = NAMESPACE) -> bool:
    """Whether the operator has read the RayService's current spec (status.observedGeneration): it
    records a new cluster it decides on in the same status update."""
    service = rayservice(name, namespace)
    return service.get("status", {}).get("observedGeneration", 0) >= service["metadata"]["generation"]


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def clusters(name: str = RELEASE, namespace: str = NAMESPACE) -> tuple[str, str]:
    """The RayService's active and pending RayCluster names ("" for none)."""
    status = rayservice(name, namespace).get("status", {})
    return tuple(
        status.get(key, {}).get("rayClusterName", "")
        for key in ("activeServiceStatus", "pendingServiceStatus")
    )


def ray_clusters(namespace: str = NAMESPACE) -> list[str]:
    objs = client.CustomObjectsApi(api()).list_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayclusters"
    )
    return [obj["metadata"]["name"] for obj in objs["items"]]


def app_status(app: str = "mnist", name: str = RELEASE, namespace: str = NAMESPACE) -> str:
    """The status the operator reports for `app` on the active cluster."""
    apps = (
        rayservice(name, namespace)
        .get("status", {})
        .get("activeServiceStatus", {})
        .get("applicationStatuses", {})
    )
    return apps.get(app, {}).get("status", "")


def pods(node_type: str, name: str = RELEASE, namespace: str = NAMESPACE) -> list[client.V1Pod]:
    """The active cluster's pods of `node_type` (head or worker), terminating ones included."""
    active, _ = clusters(name, namespace)
    selector = f"ray.io/cluster={active},ray.io/node-type={node_type}"
    return client.CoreV1Api(api()).list_namespaced_pod(namespace, label_selector=selector).items


def ready_pods(node_type: str, name: str = RELEASE, namespace: str = NAMESPACE) -> set[str]:
    """Names of the active cluster's `node_type` pods that are Ready and not terminating."""
    return {
        pod.metadata.name
        for pod in pods(node_type, name, namespace)
        if pod.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    }


def serve_endpoints(name: str = RELEASE, namespace: str = NAMESPACE) -> int:
    """The serve Service's ready pods, from its EndpointSlices, counted as KubeRay counts them for
    status.numServeEndpoints (v1.7.0 rayservice_controller.go calculateNumServeEndpointsFromSlices).
    With none, kube-proxy rejects the Service's connections: clients see "connection refused"."""
    slices = client.DiscoveryV1Api(api()).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}-serve-svc"
    )
    return len(
        {
            endpoint.target_ref.uid
            for piece in slices.items
            for endpoint in piece.endpoints or []
            if endpoint.conditions.ready and endpoint.target_ref
        }
    )


def unserved(samples: list[tuple[float, int]], since: float) -> str:
    """The spans of a Sampler of serve_endpoints in which the Service had no ready pod, in seconds
    from `since` (a time.monotonic()): "" when it always had one."""
    spans, start = [], None
    for at, count in samples:
        if count == 0 and start is None:
            start = at
        elif count and start is not None:
            spans.append(f"{start - since:+.1f} to {at - since:+.1f} s")
            start = None
    if start is not None:
        spans.append(f"{start - since:+.1f} s to the end")
    return f"no ready serve endpoint {', '.join(spans)}" if spans else ""


def head_ip(name: str = RELEASE) -> str:
    """The pod IP of the active cluster's live head (its dashboard listens there on 8265)."""
    (ip,) = [pod.status.pod_ip for pod in pods("head", name) if pod.metadata.deletion_timestamp is None]
    return ip


def wait_settled(timeout_s: float = 1200) -> float:
    """Seconds until the operator has read the release's spec and no cluster is pending (a new
    cluster it started for the spec has taken over)."""
    started = time.monotonic()
    wait_for("the operator reading the new spec", observed, 120)
    wait_for("no pending cluster", lambda: clusters()[1] == "", timeout_s)
    return time.monotonic() - started


def wait_ready(timeout_s: float = 900, name: str = RELEASE, namespace: str = NAMESPACE) -> float:
    """Seconds until the operator sets `Ready=True` on the RayService."""

    def ready() -> bool:
        return condition(rayservice(name, namespace), "Ready").get("status") == "True"

    return wait_for(f"RayService {name} Ready", ready, timeout_s, interval=2)


def load() -> str:
    """The stand-in image built (or cached) and loaded into the cluster; its tag."""
    t0 = time.monotonic()
    tag = standin.image()
    print(f"[kube] image {tag} built (or cached) in {time.monotonic() - t0:.0f} s")
    print(f"[kube] loaded into the {target.current().name} cluster in {import_image(tag):.0f} s")
    return tag


def up() -> None:
    repository, tag = load().rsplit(":", 1)
    base = {"image.repository": repository, "image.tag": tag, "kuberay.operatorVersion": operator_version()}
    install(base={key: json.dumps(value) for key, value in base.items()})
    ready = wait_ready()
    status = rayservice()["status"]
    apps = status.get("activeServiceStatus", {}).get("applicationStatuses", {})
    print(
        f"[kube] RayService Ready {ready:.0f} s after helm install; apps: "
        + ", ".join(f"{app} {s.get('status')}" for app, s in apps.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "image"])
    {"up": up, "image": load}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
