"""What a cluster built here runs as pods: CoreDNS (the one-node cluster of `make kube-up`; kind's
comes with kubeadm), the Gateway API with Traefik (clusterkit.kube.gateway), the KubeRay operator
with the feature gates of k8s/kuberay-operator-values.yaml, and the NetworkPolicy agent
kube-network-policies (on `make kube-up`'s cluster, whose bridge CNI enforces no policy), from
FROM-scratch images of the binaries build.sh cached, and the operator's CRDs and RBAC, the agent's
RBAC, from their own modules. They act on the current target (clusterkit.kube.target): `python -m
clusterkit.kube.addons operator` installs the operator on a kind cluster where its Helm chart
cannot be reached."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from clusterkit.kube import builds, gateway, network, target
from clusterkit.kube.layout import DNS_SERVICE_IP, REPO
from clusterkit.kube.workloads import apply, deployment, identity, import_image, restricted
from clusterkit.poll import wait_for

OPERATOR_NAMESPACE = "kuberay-system"  # the namespace the chart's NetworkPolicy admits to the dashboard
# The values `make kind-operator` installs the operator's Helm chart with; their resources here too.
OPERATOR_VALUES = REPO / "k8s" / "kuberay-operator-values.yaml"


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
            deployment(
                name,
                ns,
                labels,
                {
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
            ),
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


def feature_gates() -> str:
    """The operator chart's featureGates value as the operator's flag: Name=true,Other=false."""
    gates = yaml.safe_load(OPERATOR_VALUES.read_text())["featureGates"]
    return ",".join(f"{g['name']}={str(g['enabled']).lower()}" for g in gates)


def operator() -> str:
    """The KubeRay operator, its CRDs applied server-side, run as the kuberay-operator Helm chart
    runs it (helm-chart/kuberay-operator/templates/deployment.yaml: /manager, the metrics port
    probed, a restricted security context, the resources of k8s/kuberay-operator-values.yaml).
    The chart itself is not on the Go module proxy, so its Deployment is written out here.
    Returns the operator version."""
    root, binary = builds.kuberay()
    version = root.name.split("@")[-1]
    target.kubectl("apply", "--server-side", "-f", str(root / "config" / "crd" / "bases"))
    tag = f"localhost/mnist-serve-kuberay-operator:{version}"
    import_image(tag, binary, "manager")
    ns, name = OPERATOR_NAMESPACE, "kuberay-operator"
    (role,) = [r for r in yaml.safe_load_all((root / "config" / "rbac" / "role.yaml").read_text()) if r]
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            *identity(name, ns, role),
            deployment(
                name,
                ns,
                labels,
                {
                    "serviceAccountName": name,
                    "containers": [
                        {
                            "name": name,
                            "image": tag,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/manager"],
                            # One replica: no leader election to wait for.
                            "args": ["--enable-leader-election=false", f"--feature-gates={feature_gates()}"],
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
                strategy={"type": "Recreate"},
            ),
        ]
    )
    return version


POLICY_AGENT = "kube-network-policies"  # its DaemonSet, in kube-system
POLICY_QUEUE = 98  # the nfqueue number of the agent's install.yaml (--nfqueue-id=98)
POLICY_METRICS_PORT = 9080  # the agent's default --metrics-bind-address port, on the node's address


def queue_bound(queue: int) -> bool:
    """Whether a process has bound nfqueue `queue` in this network namespace (the node's): a line
    per bound queue, its number first (/proc/net/netfilter/nfnetlink_queue)."""
    lines = Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines()
    return any(line.split()[0] == str(queue) for line in lines if line.strip())


def networkpolicies() -> str:
    """kube-network-policies (sigs.k8s.io, v0.8.0), run as its install.yaml runs it: a DaemonSet
    on the node's network with its ClusterRole (read from the module), nfqueue 98, the node's name
    (cmd/main.go's flags). It evaluates the first packet of each connection against the
    NetworkPolicies, the pod and namespace labels it watches, and drops what they deny. Only
    NET_ADMIN as root (nftables, nfqueue), not install.yaml's `privileged`. Its image stops it
    with SIGINT: cmd/main.go cleans up on SIGINT only. No NRI socket (Debian's containerd 1.6
    has none): pod IPs come from the API server. On `make kube-up`'s node only, where
    clusterkit.kube.network adds the rules that send packets to its queue, once it is bound.
    Returns the agent's version."""
    if target.current().name != "kube":
        sys.exit("the NetworkPolicy agent is installed on `make kube-up`'s cluster only")
    root = builds.module_source(POLICY_AGENT, "sigs.k8s.io/kube-network-policies")
    version = root.name.split("@")[-1]
    binary = builds.cached(POLICY_AGENT, POLICY_AGENT)
    tag = f"localhost/mnist-serve-kube-network-policies:{version}"
    import_image(tag, binary, POLICY_AGENT, stop_signal="SIGINT")
    ns, name = "kube-system", POLICY_AGENT
    (role,) = [
        obj
        for obj in yaml.safe_load_all((root / "install.yaml").read_text())
        if obj and obj["kind"] == "ClusterRole"
    ]
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
    ]
    apply(
        [
            *identity(name, ns, role),
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": name,
                            "hostNetwork": True,
                            "priorityClassName": "system-node-critical",
                            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                            "containers": [
                                {
                                    "name": name,
                                    "image": tag,
                                    "imagePullPolicy": "IfNotPresent",
                                    "args": [
                                        "--hostname-override=$(NODE_NAME)",
                                        f"--nfqueue-id={POLICY_QUEUE}",
                                        # Its metrics (verdict counts) on the node's address only.
                                        f"--metrics-bind-address=$(HOST_IP):{POLICY_METRICS_PORT}",
                                        # A DNS race workaround for kernels before 6.12 (its help
                                        # text); this one is 6.18.
                                        "--netfilter-bug-1766-fix=false",
                                    ],
                                    "env": env,
                                    "ports": [{"name": "metrics", "containerPort": POLICY_METRICS_PORT}],
                                    "readinessProbe": {
                                        "httpGet": {"path": "/metrics", "port": POLICY_METRICS_PORT},
                                        "periodSeconds": 5,
                                    },
                                    "resources": {
                                        "requests": {"cpu": "100m", "memory": "50Mi"},
                                        "limits": {"memory": "256Mi"},
                                    },
                                    "securityContext": {
                                        "runAsUser": 0,
                                        "runAsNonRoot": False,
                                        "allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
                                    },
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
    parser.add_argument("addons", nargs="+", choices=["coredns", "gateway", "operator", "networkpolicies"])
    started = time.monotonic()
    for addon in parser.parse_args().addons:
        kind = "deployment"
        if addon == "coredns":
            coredns()
            namespace, deployment, what = "kube-system", "coredns", "CoreDNS"
        elif addon == "gateway":
            namespace, deployment = gateway.NAMESPACE, "traefik"
            what = f"the Gateway API with Traefik {gateway.install()}"
        elif addon == "operator":
            namespace, deployment = OPERATOR_NAMESPACE, "kuberay-operator"
            what = f"the KubeRay operator {operator()}"
        else:
            kind, namespace, deployment = "daemonset", "kube-system", POLICY_AGENT
            what = f"the NetworkPolicy agent kube-network-policies {networkpolicies()}"
        target.kubectl("-n", namespace, "rollout", "status", f"{kind}/{deployment}", "--timeout=300s")
        if addon == "networkpolicies":
            wait_for(f"the agent bound to nfqueue {POLICY_QUEUE}", lambda: queue_bound(POLICY_QUEUE), 60)
            network.policy_queue_up(POLICY_QUEUE)
        print(
            f"[kube] {what} available on the {target.current().name} cluster "
            f"({time.monotonic() - started:.0f} s)"
        )


if __name__ == "__main__":
    main()
