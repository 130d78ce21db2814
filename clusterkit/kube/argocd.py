"""Argo CD on a cluster built here (`make gitops-test`), installed as its users install it: the
release's own manifests/install.yaml, read from the Go module `build.sh argocd` built, with the
images made here (argocd.Containerfile) and our RayService health check merged into argocd-cm
(k8s/argocd/argocd-cm-health.yaml, as that file tells users to). Of install.yaml's components, the
ones a GitOps rollout runs on: the application controller, the repo server, the ApplicationSet
controller and Redis. The API server (UI, CLI, webhooks), Dex and notifications are left out; a
push is announced the way a webhook does it, with the refresh annotation (`refresh`).

Beside it, a git server on the cluster: `git daemon` in a pod, serving one bare repository over
git:// (anonymous pushes on: it is reachable only on the cluster's bridge), at REPO_URL for Argo
CD and at the Service's cluster IP for this machine (`push_url`).

    python -m clusterkit.kube.argocd up
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client

from clusterkit import helmchart, standin
from clusterkit.kube import builds, release, target
from clusterkit.kube.layout import REPO
from clusterkit.kube.workloads import apply, deployment, restricted
from clusterkit.podman import podman, use_containers_conf

MODULE = "github.com/argoproj/argo-cd/v3"
NAMESPACE = "argocd"
CONTAINERFILE = Path(__file__).with_name("argocd.Containerfile")
# install.yaml's objects for the components left out, by name prefix.
LEFT_OUT = ("argocd-server", "argocd-dex-server", "argocd-notifications")
UPSTREAM_IMAGE = "quay.io/argoproj/argocd:"
HEALTH = REPO / "k8s" / "argocd" / "argocd-cm-health.yaml"
# The URL k8s/argocd/ names, and the one it is adapted to here.
UPSTREAM_REPO_URL = "https://github.com/mnist-serve/mnist-serve.git"
GIT_NAMESPACE = "git"
GIT_SERVER = "git-server"
GIT_REPOSITORY = "mnist-serve.git"
REPO_URL = f"git://{GIT_SERVER}.{GIT_NAMESPACE}.svc.cluster.local/{GIT_REPOSITORY}"


def version() -> str:
    return builds.go_version("argocd", MODULE)


def images(root: Path, tag: str) -> tuple[str, str]:
    """The argocd and redis images (argocd.Containerfile), built with podman (cached by its layers)
    and loaded into the cluster's containerd; their references."""
    use_containers_conf()
    argocd, redis = f"localhost/mnist-serve-argocd:{tag}", "localhost/mnist-serve-argocd-redis:bookworm"
    with tempfile.TemporaryDirectory() as ctx:
        for name in ("hack/gpg-wrapper.sh", "hack/git-verify-wrapper.sh", "entrypoint.sh"):
            shutil.copy2(root / name, ctx)
        shutil.copy2(builds.cached("argocd", "argocd"), ctx)
        shutil.copy2(helmchart.HELM, Path(ctx) / "helm")
        base = ["build", "--build-arg", f"OS_IMAGE={standin.os_image()}", "-f", str(CONTAINERFILE)]
        for image, stage in ((argocd, "argocd"), (redis, "redis")):
            podman(*base, "--target", stage, "-t", image, ctx)
    for image in (argocd, redis):
        release.import_image(image)
    return argocd, redis


def manifests(root: Path, argocd: str, redis: str) -> list[dict]:
    """install.yaml without LEFT_OUT, on our images, with the RayService health check in argocd-cm."""
    health = yaml.safe_load(HEALTH.read_text())["data"]
    kept = []
    for obj in yaml.safe_load_all((root / "manifests" / "install.yaml").read_text()):
        if not obj or obj["metadata"]["name"].startswith(LEFT_OUT):
            continue
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "argocd-cm":
            obj["data"] = (obj.get("data") or {}) | health
        if obj["kind"] in ("Deployment", "StatefulSet"):
            pod = obj["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                image = container["image"]
                container["image"] = argocd if image.startswith(UPSTREAM_IMAGE) else redis
                container["imagePullPolicy"] = "IfNotPresent"
        if obj["kind"] != "CustomResourceDefinition" and not obj["kind"].startswith("Cluster"):
            obj["metadata"]["namespace"] = NAMESPACE
        kept.append(obj)
    return kept


def git_server(image: str) -> list[dict]:
    """A Deployment running `git daemon` over an empty bare repository, and its Service."""
    labels = {"app.kubernetes.io/name": GIT_SERVER}
    base = "/srv/git"
    script = (
        f"git init --quiet --bare --initial-branch=main {base}/{GIT_REPOSITORY} && "
        f"exec git daemon --reuseaddr --export-all --enable=receive-pack --informative-errors "
        f"--base-path={base} {base}"
    )
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GIT_NAMESPACE}},
        deployment(
            GIT_SERVER,
            GIT_NAMESPACE,
            labels,
            {
                "containers": [
                    {
                        "name": "git-daemon",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/bin/tini", "--", "sh", "-c", script],
                        "ports": [{"name": "git", "containerPort": 9418}],
                        "readinessProbe": {"tcpSocket": {"port": "git"}, "periodSeconds": 2},
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                        "securityContext": restricted(),
                        "volumeMounts": [{"name": "repositories", "mountPath": base}],
                    }
                ],
                "volumes": [{"name": "repositories", "emptyDir": {}}],
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": GIT_SERVER, "namespace": GIT_NAMESPACE},
            "spec": {"selector": labels, "ports": [{"name": "git", "port": 9418, "targetPort": "git"}]},
        },
    ]


def push_url() -> str:
    """The git server's repository as this machine reaches it (kube-proxy's rules on the node)."""
    svc = client.CoreV1Api(release.api()).read_namespaced_service(GIT_SERVER, GIT_NAMESPACE)
    return f"git://{svc.spec.cluster_ip}/{GIT_REPOSITORY}"


def adapted(path: Path) -> list[dict]:
    """The objects of a k8s/argocd/ file with the repository URL pointed at the git server here."""
    text = path.read_text().replace(UPSTREAM_REPO_URL, REPO_URL)
    return [obj for obj in yaml.safe_load_all(text) if obj]


def application(name: str) -> dict:
    return client.CustomObjectsApi(release.api()).get_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "applications", name
    )


def refresh(name: str) -> None:
    """What Argo CD's webhook handler does on a push: ask the controller to look at git again."""
    client.CustomObjectsApi(release.api()).patch_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        NAMESPACE,
        "applications",
        name,
        {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
    )


def up() -> str:
    """Argo CD and the git server, rolled out; the Argo CD version."""
    started = time.monotonic()
    tag = version()
    root = builds.module_source("argocd", MODULE)
    argocd, redis = images(root, tag)
    print(f"[kube] Argo CD {tag} images built and loaded ({time.monotonic() - started:.0f} s)")
    apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    apply(manifests(root, argocd, redis))
    apply(git_server(argocd))
    workloads = [
        (NAMESPACE, "deployment/argocd-redis"),
        (NAMESPACE, "deployment/argocd-repo-server"),
        (NAMESPACE, "deployment/argocd-applicationset-controller"),
        (NAMESPACE, "statefulset/argocd-application-controller"),
        (GIT_NAMESPACE, f"deployment/{GIT_SERVER}"),
    ]
    for namespace, workload in workloads:
        target.kubectl("-n", namespace, "rollout", "status", workload, "--timeout=300s")
    print(
        f"[kube] Argo CD {tag} and a git server available on the {target.current().name} cluster "
        f"({time.monotonic() - started:.0f} s)"
    )
    return tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up"])
    parser.parse_args()
    up()


if __name__ == "__main__":
    main()
