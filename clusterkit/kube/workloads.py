"""The Kubernetes objects the add-ons of a cluster built here are made of (clusterkit.kube.addons,
gateway, argocd): applied server-side, one-replica Deployments of FROM-scratch images, restricted
containers, a ServiceAccount bound to its project's own ClusterRole."""

from __future__ import annotations

from pathlib import Path

import yaml

from clusterkit.kube import images, target


def apply(objects: list[dict]) -> None:
    target.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(objects)
    )


def identity(name: str, namespace: str, role: dict) -> list[dict]:
    """A ServiceAccount `name` bound to ClusterRole `role` (its rules from that project's own
    manifests), both named `name`."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def import_image(tag: str, binary: Path, entrypoint: str, stop_signal: str | None = None) -> None:
    target.current().load_archive(images.from_scratch(tag, binary, entrypoint, stop_signal))


def restricted() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def deployment(name: str, namespace: str, labels: dict, pod: dict, **spec) -> dict:
    """A one-replica Deployment running `pod` (a pod spec), its pods labelled and selected by
    `labels`; `spec` adds fields to the Deployment's spec (a strategy)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            **spec,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
