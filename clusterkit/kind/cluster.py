"""The kind cluster of `make kind-up`, as the real-cluster suite reaches it.

kind's own commands (create, load, delete) run from the Makefile; this module knows what the suite
needs beyond them: the kubeconfig kind wrote (artifacts/kind/kubeconfig, never ~/.kube/config),
the node's containerd, this machine's address as pods see it (the `kind` network's gateway), and
routes from this machine to the cluster's pod and service ranges through the node. With those
routes the suite reaches the serve Service's cluster IP and a head pod's dashboard exactly as on
the one-node cluster of `make kube-up`: a port-forward pins one pod and dies with it (and the
suite deletes pods under load), and the NodePort of KubeRay's serve Service cannot be fixed (the
operator rebuilds its ports: ray-operator/controllers/ray/common/service.go, BuildServeService).

    python -m clusterkit.kind.cluster routes-up|routes-down
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import yaml

from clusterkit.kind.engine import NETWORK, STATE, docker

NAME = os.environ.get("KIND_CLUSTER", "mnist-serve")
KUBECONFIG = STATE / "kubeconfig"
CONFIG = Path(__file__).resolve().parents[2] / "k8s" / "kind" / "cluster.yaml"
ROUTES = STATE / "routes.json"  # the routes routes-up added, for routes-down


def node() -> str:
    """The control-plane node's container (k8s/kind/cluster.yaml has one node)."""
    return f"{NAME}-control-plane"


def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """ctr in the node, in the namespace the kubelet's images live in."""
    return docker("exec", node(), "ctr", "--namespace=k8s.io", *args, check=check)


def load_archive(archive: Path) -> None:
    kind = os.environ.get("KIND", "kind")
    subprocess.run(
        [kind, "load", "image-archive", str(archive), "--name", NAME], check=True, capture_output=True
    )


def gateway() -> str:
    """This machine on the `kind` network: where pods reach a server the suite starts here."""
    configs = json.loads(docker("network", "inspect", NETWORK, "--format", "{{json .IPAM.Config}}").stdout)
    (ip,) = [c["Gateway"] for c in configs if ipaddress.ip_network(c["Subnet"]).version == 4]
    return ip


def node_ip() -> str:
    out = docker("inspect", node(), "--format", "{{json .NetworkSettings.Networks}}").stdout
    return json.loads(out)[NETWORK]["IPAddress"]


def ranges() -> list[str]:
    """The cluster's pod and service ranges: k8s/kind/cluster.yaml's, or kind's defaults."""
    networking = yaml.safe_load(CONFIG.read_text()).get("networking", {})
    return [networking.get("podSubnet", "10.244.0.0/16"), networking.get("serviceSubnet", "10.96.0.0/16")]


def ip(*args: str) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "ip", *args], check=True, capture_output=True)


def routes_up() -> None:
    via = node_ip()
    for cidr in ranges():
        ip("route", "replace", cidr, "via", via)
    ROUTES.write_text(json.dumps({"via": via, "ranges": ranges()}))
    print(f"[kind] routes to {', '.join(ranges())} via the node ({via})")


def routes_down() -> None:
    if not ROUTES.exists():
        return
    added = json.loads(ROUTES.read_text())
    for cidr in added["ranges"]:
        try:
            ip("route", "del", cidr, "via", added["via"])
        except subprocess.CalledProcessError:
            pass  # gone with the network's bridge
    ROUTES.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["routes-up", "routes-down"])
    {"routes-up": routes_up, "routes-down": routes_down}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
