"""Where the one-node cluster of `make kube-up` lives: its folder under artifacts/kube/, its
addresses and ranges (which exist only on its own bridge), and how its tools are run."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "artifacts" / "kube"
KUBECONFIG = STATE / "kubeconfig"

BRIDGE = "mnskube0"
NODE_IP = "10.244.0.1"  # the bridge's address: API server, kubelet and the pods' gateway
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
API_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
NODE = "mnist-serve-node"
ETCD_CLIENT = "http://127.0.0.1:23790"  # off etcd's default ports: nothing else on the machine collides
ETCD_PEER = "http://127.0.0.1:23800"
PAUSE_IMAGE = "localhost/mnist-serve-pause:1"


def run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ctr", f"--address={STATE}/containerd/containerd.sock", "-n", "k8s.io", *args, check=check)
