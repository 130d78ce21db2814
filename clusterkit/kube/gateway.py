"""The Gateway API on a cluster built here: the standard-channel CRDs of the sigs.k8s.io/gateway-api
module Traefik is built against, and Traefik v3 (build.sh, from the Go module proxy) as its
implementation, GatewayClass `traefik`. KubeRay's NewClusterWithIncrementalUpgrade creates a Gateway
of that class with one HTTP listener on port 80, and moves traffic between the old and the new
cluster through its HTTPRoute's backend weights, which Traefik applies per request."""

from __future__ import annotations

from pathlib import Path

import yaml

from clusterkit.kube import builds, target
from clusterkit.kube.workloads import apply, deployment, identity, import_image, restricted

NAMESPACE = "traefik"
CLASS = "traefik"
CONTROLLER = "traefik.io/gateway-controller"  # pkg/provider/kubernetes/gateway/kubernetes.go
TRAEFIK = "github.com/traefik/traefik/v3"
GATEWAY_API = "sigs.k8s.io/gateway-api"
LISTENER_PORT = 80  # KubeRay's DefaultGatewayListenerPort (ray-operator/controllers/ray/utils/constant.go)
PING_PORT = 8082  # Traefik's own entry point for /ping, not routed by any Gateway
# Traefik's Service, at a fixed cluster IP (in kube-up's 10.96.0.0/24 and kind's 10.96.0.0/16): the
# address Traefik writes into every Gateway's status, how clients and tests reach a Gateway. (From
# a Service Traefik copies only load-balancer ingresses: gatewayAddresses in
# pkg/provider/kubernetes/gateway/kubernetes.go, v3.6.12.)
ADDRESS = "10.96.0.80"


def crds() -> Path:
    """The Gateway API CRDs, standard channel, of the version Traefik's build requires."""
    return builds.module_source("traefik", GATEWAY_API) / "config" / "crd" / "standard"


def manifests(tag: str) -> list[dict]:
    """Traefik's namespace, identity (its own RBAC from the module's reference docs), Deployment,
    Service and GatewayClass."""
    rbac = builds.module_source("traefik", TRAEFIK) / "docs/content/reference/dynamic-configuration"
    role, _binding = yaml.safe_load_all((rbac / "kubernetes-gateway-rbac.yml").read_text())
    role["metadata"]["name"] = "traefik"
    labels = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik"}
    args = [
        f"--entryPoints.web.address=:{LISTENER_PORT}",
        f"--entryPoints.ping.address=:{PING_PORT}",
        "--ping.entryPoint=ping",
        "--providers.kubernetesGateway=true",
        f"--providers.kubernetesGateway.statusAddress.ip={ADDRESS}",
        # Nothing leaves the cluster: no release check, no usage report.
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        "--accessLog=false",
    ]
    probe = {"httpGet": {"path": "/ping", "port": PING_PORT}, "periodSeconds": 5, "failureThreshold": 3}
    pod = {
        "serviceAccountName": "traefik",
        # Port 80 without root or NET_BIND_SERVICE: a namespaced, safe sysctl.
        "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
        "containers": [
            {
                "name": "traefik",
                "image": tag,
                "imagePullPolicy": "IfNotPresent",
                "args": args,
                "ports": [{"name": "web", "containerPort": LISTENER_PORT, "protocol": "TCP"}],
                "readinessProbe": probe,
                "livenessProbe": probe,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "1", "memory": "256Mi"},
                },
                "securityContext": restricted(),
            }
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *identity("traefik", NAMESPACE, role),
        deployment("traefik", NAMESPACE, labels, pod),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAMESPACE, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "clusterIP": ADDRESS,
                "selector": labels,
                "ports": [{"name": "web", "port": LISTENER_PORT, "targetPort": "web", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS},
            "spec": {"controllerName": CONTROLLER},
        },
    ]


def install() -> str:
    """The CRDs (server-side: the operator must find them before it starts with the gate on),
    then Traefik. Returns Traefik's version."""
    target.kubectl("apply", "--server-side", "-f", str(crds()))
    target.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    binary = builds.cached("traefik", "traefik")
    version = binary.parent.name.removeprefix("traefik-")
    tag = f"localhost/mnist-serve-traefik:{version}"
    import_image(tag, binary, "traefik")
    apply(manifests(tag))
    return version
