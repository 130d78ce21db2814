"""The cluster's network on this machine: its bridge and the sysctls a bridge CNI and kube-proxy
need (restored on the way down), the iptables chains the kubelet and kube-proxy leave, the chain
that hands new pod connections to the NetworkPolicy agent, the pods' network namespaces and the
mounts under artifacts/kube/."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from clusterkit.kube.layout import BRIDGE, NODE_IP, POD_CIDR, STATE, ctr, run

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


# The NetworkPolicy agent (clusterkit.kube.addons.networkpolicies, kube-network-policies v0.8.0)
# judges the first packet of each connection in user space, from an nfqueue. It sends packets
# there with an nftables `queue` rule in its own table, `inet kube-network-policies`
# (pkg/networkpolicy/controller.go: syncNFTablesRules, Config.Defaults), which this kernel refuses:
# it is built without CONFIG_NFT_QUEUE ("No such file or directory" on adding the rule; the whole
# table is one batch, so none of it is made). It has xtables' NFQUEUE target (through nft_compat),
# so this chain sends the same packets to the agent's queue, as the agent's own rules would:
# in POSTROUTING, after DNAT (a Service's pod is judged) and before SNAT; not the node's root
# (the agent's `meta skuid 0 accept`: the kubelet's probes, this machine's tests); not established
# or related packets. Where the agent's table sends only the packets of pods some policy selects,
# this sends every new connection of the pod range: the agent accepts what no policy selects.
POLICY_CHAIN = "MNIST-NETPOL"
POLICY_COMMENT = "mnist-serve: new pod connections to the NetworkPolicy agent"
POLICY_JUMP = ("POSTROUTING", "-m", "comment", "--comment", POLICY_COMMENT, "-j", POLICY_CHAIN)
AGENT_TABLE = ("inet", "kube-network-policies")


def policy_queue_up(queue: int) -> None:
    """Packets of new pod connections to the agent's nfqueue `queue`. No `--queue-bypass`: with no
    agent bound to the queue they are dropped, as the agent's own rules do unless `--fail-open`."""
    run("iptables", "-t", "mangle", "-N", POLICY_CHAIN, check=False)
    run("iptables", "-t", "mangle", "-F", POLICY_CHAIN)
    for rule in (
        ("-m", "owner", "--uid-owner", "0", "-j", "RETURN"),
        ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"),
        ("-s", POD_CIDR, "-j", "NFQUEUE", "--queue-num", str(queue)),
        ("-d", POD_CIDR, "-j", "NFQUEUE", "--queue-num", str(queue)),
    ):
        run("iptables", "-t", "mangle", "-A", POLICY_CHAIN, *rule)
    if run("iptables", "-t", "mangle", "-C", *POLICY_JUMP, check=False).returncode != 0:
        run("iptables", "-t", "mangle", "-A", *POLICY_JUMP)


def policy_queue_down() -> None:
    """The chain above, and the agent's own table where a kernel let it make one (it deletes it
    only on SIGINT, never when killed)."""
    while run("iptables", "-t", "mangle", "-D", *POLICY_JUMP, check=False).returncode == 0:
        pass
    run("iptables", "-t", "mangle", "-F", POLICY_CHAIN, check=False)
    run("iptables", "-t", "mangle", "-X", POLICY_CHAIN, check=False)
    run("nft", "delete", "table", *AGENT_TABLE, check=False)


def down(bins: dict[str, Path] | None) -> None:
    if bins and bins.get("kube-proxy", Path()).exists():
        # kube-proxy removes the KUBE-* chains and jumps it created (and nothing else).
        run(str(bins["kube-proxy"]), "--cleanup", check=False)
    kubelet_chains_down()
    policy_queue_down()
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
