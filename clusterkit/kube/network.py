"""The cluster's network on this machine: its bridge and the sysctls a bridge CNI and kube-proxy
need (restored on the way down), the iptables chains the kubelet and kube-proxy leave, the pods'
network namespaces and the mounts under artifacts/kube/."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from clusterkit.kube.layout import BRIDGE, NODE_IP, STATE, ctr, run

SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}


def up() -> None:
    """The bridge with the node address, so the API server can bind before the first pod; the
    sysctls a bridge CNI and kube-proxy need (previous values saved for `down`)."""
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
    saved = STATE / "sysctls.yaml"
    if not saved.exists():
        saved.write_text(yaml.safe_dump({k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS}))
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)


# The kubelet's own chains (pkg/kubelet/kubelet_network_linux.go), which kube-proxy --cleanup keeps.
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def kubelet_chains_down() -> None:
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            for rule in run(f"{tool}-save", "-t", table, check=False).stdout.splitlines():
                if rule.startswith("-A ") and any(f"-j {chain}" in rule for chain in KUBELET_CHAINS):
                    run(tool, "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            for chain in KUBELET_CHAINS:
                run(tool, "-t", table, "-F", chain, check=False)
                run(tool, "-t", table, "-X", chain, check=False)


def down(bins: dict[str, Path] | None) -> None:
    if bins and bins.get("kube-proxy", Path()).exists():
        # kube-proxy removes the KUBE-* chains and jumps it created (and nothing else).
        run(str(bins["kube-proxy"]), "--cleanup", check=False)
    kubelet_chains_down()
    run("ip", "link", "del", BRIDGE, check=False)
    saved = STATE / "sysctls.yaml"
    if saved.exists():
        for key, value in yaml.safe_load(saved.read_text()).items():
            Path("/proc/sys", key).write_text(value)
        saved.unlink()


def pod_netns() -> list[Path]:
    """Network namespaces of our pods: the /run/netns bind mounts that are the network namespace
    of a task our containerd runs (matched by inode, so no other runtime's namespaces)."""
    inodes = set()
    for line in ctr("tasks", "ls", check=False).stdout.splitlines()[1:]:
        try:
            inodes.add(os.stat(f"/proc/{line.split()[1]}/ns/net").st_ino)
        except (IndexError, OSError):
            pass
    return [ns for ns in Path("/run/netns").glob("*") if ns.stat().st_ino in inodes]


def unmount_under(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root) + "/")), key=len, reverse=True):
        run("umount", "-l", mount, check=False)
