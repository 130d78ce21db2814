"""The cluster the real-cluster suite (tests/kube) and the release helpers act on: the one-node
cluster of `make kube-up` (MNIST_SERVE_CLUSTER=kube, the default) or the kind cluster of
`make kind-up` (MNIST_SERVE_CLUSTER=kind), which the make targets set. This is the one place that
knows how each is reached; the tests read the same on both."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Protocol

from clusterkit.kube import cluster, layout


class Target(Protocol):
    name: str
    kubeconfig: Path

    def host_ip(self) -> str:
        """This machine's address as pods see it (for a server a test starts here)."""

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """ctr on the node, in the kubelet's image namespace."""

    def load_archive(self, archive: Path) -> None:
        """An OCI or docker image archive into the node's containerd."""


class KubeUp:
    name = "kube"
    kubeconfig = layout.KUBECONFIG

    def host_ip(self) -> str:
        return layout.NODE_IP

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return layout.ctr(*args, check=check)

    def load_archive(self, archive: Path) -> None:
        layout.ctr("images", "import", str(archive))


class Kind:
    name = "kind"

    def __init__(self) -> None:
        from clusterkit.kind import cluster as kind

        self.kind = kind
        self.kubeconfig = kind.KUBECONFIG

    def host_ip(self) -> str:
        return self.kind.gateway()

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.kind.ctr(*args, check=check)

    def load_archive(self, archive: Path) -> None:
        self.kind.load_archive(archive)


@functools.cache
def current() -> Target:
    name = os.environ.get("MNIST_SERVE_CLUSTER", "kube")
    targets = {"kube": KubeUp, "kind": Kind}
    if name not in targets:
        raise SystemExit(f"MNIST_SERVE_CLUSTER={name}: expected one of {', '.join(targets)}")
    return targets[name]()


def kubectl(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """The pinned kubectl (make kube-build) against the current cluster."""
    binary = cluster.binaries()["kubectl"]
    command = [str(binary), f"--kubeconfig={current().kubeconfig}", *args]
    return subprocess.run(command, check=check, capture_output=True, text=True, **kw)
