"""What a cluster built here runs as pods: CoreDNS (the one-node cluster of `make kube-up`; kind's
comes with kubeadm) and the KubeRay operator, from FROM-scratch images of the binaries build.sh
cached, and the operator's CRDs and RBAC from its own module. They act on the current target
(clusterkit.kube.target): `python -m clusterkit.kube.addons operator` installs the operator on a
kind cluster where its Helm chart cannot be reached."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from clusterkit.kube import builds, images, target
from clusterkit.kube.layout import DNS_SERVICE_IP, REPO

OPERATOR_NAMESPACE = "kuberay-system"  # the namespace the chart's NetworkPolicy admits to the dashboard
# The values `make kind-operator` installs the operator's Helm chart with; their resources here too.
OPERATOR_VALUES = REPO / "k8s" / "kuberay-operator-values.yaml"


def apply(objects: list[dict]) -> None:
    target.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(objects)
    )


def import_image(tag: str, binary: Path, entrypoint: str) -> None:
    target.current().load_archive(images.from_scratch(tag, binary, entrypoint))


def restricted() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def coredns() -> None:
    binary = builds.cached("coredns", "coredns")
    tag = f"localhost/mnist-serve-coredns:{binary.parent.name.removeprefix('coredns-')}"
    import_image(tag, binary, "coredns")
    ns, name = "kube-system", "coredns"
    labels = {"k8s-app": "kube-dns"}
    # Port 1053 in the pod (no root, no capabilities), 53 on the Service. No `forward`: names
    # outside cluster.local get SERVFAIL, so no query ever leaves this machine.
    corefile = (
        ".:1053 {\n    errors\n    health :8080\n    ready :8181\n    cache 30\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        pods insecure\n    }\n}\n"
    )
    apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "system:coredns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:coredns",
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns},
                "data": {"Corefile": corefile},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": name,
                            "dnsPolicy": "Default",
                            "containers": [
                                {
                                    "name": "coredns",
                                    "image": tag,
                                    "imagePullPolicy": "IfNotPresent",
                                    "args": ["-conf", "/etc/coredns/Corefile"],
                                    "ports": [
                                        {"containerPort": 1053, "protocol": p, "name": f"dns-{p.lower()}"}
                                        for p in ("UDP", "TCP")
                                    ],
                                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                                    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                    "resources": {
                                        "requests": {"cpu": "50m", "memory": "64Mi"},
                                        "limits": {"memory": "128Mi"},
                                    },
                                    "securityContext": restricted(),
                                    "volumeMounts": [
                                        {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
                                    ],
                                }
                            ],
                            "volumes": [{"name": "config", "configMap": {"name": name}}],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "selector": labels,
                    "ports": [
                        {"name": f"dns-{p.lower()}", "port": 53, "targetPort": 1053, "protocol": p}
                        for p in ("UDP", "TCP")
                    ],
                },
            },
        ]
    )


def operator() -> str:
    """The KubeRay operator, its CRDs applied server-side, run as the kuberay-operator Helm chart
    runs it (helm-chart/kuberay-operator/templates/deployment.yaml: /manager, the metrics port
    probed, a restricted security context, the resources of k8s/kuberay-operator-values.yaml).
    The chart itself is not on the Go module proxy, so its Deployment is written out here.
    Returns the operator version."""
    root = builds.module_source("kuberay", builds.KUBERAY)
    version = root.name.split("@")[-1]
    target.kubectl("apply", "--server-side", "-f", str(root / "config" / "crd" / "bases"))
    tag = f"localhost/mnist-serve-kuberay-operator:{version}"
    import_image(tag, builds.cached("kuberay", "ray-operator"), "manager")
    ns, name = OPERATOR_NAMESPACE, "kuberay-operator"
    (role,) = [r for r in yaml.safe_load_all((root / "config" / "rbac" / "role.yaml").read_text()) if r]
    role["metadata"] = {"name": name}
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
            role,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": name,
                            "containers": [
                                {
                                    "name": name,
                                    "image": tag,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["/manager"],
                                    # One replica: no leader election to wait for.
                                    "args": [
                                        "--enable-leader-election=false",
                                        "--feature-gates=RayClusterStatusConditions=true",
                                    ],
                                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                                    "livenessProbe": {
                                        "httpGet": {"path": "/metrics", "port": "http"},
                                        "initialDelaySeconds": 10,
                                        "periodSeconds": 5,
                                        "failureThreshold": 5,
                                    },
                                    "readinessProbe": {
                                        "httpGet": {"path": "/metrics", "port": "http"},
                                        "initialDelaySeconds": 10,
                                        "periodSeconds": 5,
                                        "failureThreshold": 5,
                                    },
                                    "resources": yaml.safe_load(OPERATOR_VALUES.read_text())["resources"],
                                    "securityContext": restricted(),
                                }
                            ],
                        },
                    },
                },
            },
        ]
    )
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addons", nargs="+", choices=["coredns", "operator"])
    started = time.monotonic()
    for addon in parser.parse_args().addons:
        if addon == "coredns":
            coredns()
            namespace, deployment, what = "kube-system", "coredns", "CoreDNS"
        else:
            namespace, deployment = OPERATOR_NAMESPACE, "kuberay-operator"
            what = f"the KubeRay operator {operator()}"
        target.kubectl("-n", namespace, "rollout", "status", f"deployment/{deployment}", "--timeout=300s")
        print(
            f"[kube] {what} available on the {target.current().name} cluster "
            f"({time.monotonic() - started:.0f} s)"
        )


if __name__ == "__main__":
    main()
