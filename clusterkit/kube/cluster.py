"""A one-node Kubernetes on this machine from the binaries `clusterkit/kube/build.sh` caches.

Everything lives under artifacts/kube/ (certificates, etcd data, containerd's root and state, the
kubelet's root, logs, PID files) and on one bridge (`clusterkit.kube.layout`, `.network`): the pod
and service ranges exist only there. CoreDNS and the operator come next (`clusterkit.kube.addons`).
`down` stops each process by its recorded PID, then removes the pod network namespaces, the mounts
under artifacts/kube/, the bridge and the iptables chains kube-proxy made, so that `up` works
again right after.

Flags follow upstream's hack/local-up-cluster.sh (kubernetes v1.34), minus its downloads and sudo.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from clusterkit.kube import images, network, pki
from clusterkit.kube.builds import CACHE, cached, go_version
from clusterkit.kube.layout import (
    BRIDGE,
    DNS_SERVICE_IP,
    ETCD_CLIENT,
    ETCD_PEER,
    KUBECONFIG,
    NODE,
    NODE_IP,
    PAUSE_IMAGE,
    POD_CIDR,
    REPO,
    SERVICE_CIDR,
    STATE,
    ctr,
    run,
)
from clusterkit.poll import wait_for
from clusterkit.processes import end_group

# The order processes start in; down stops them in reverse.
PROCESSES = [
    "containerd",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
]


def binaries() -> dict[str, Path]:
    k8s = CACHE / f"kubernetes-{go_version('kubernetes', 'k8s.io/kubernetes')}"
    paths = {name: k8s / name for name in PROCESSES[2:] + ["kubectl"]}
    paths["etcd"] = CACHE / f"etcd-{go_version('etcd', 'go.etcd.io/etcd/server/v3')}" / "etcd"
    paths["containerd"] = Path("/usr/bin/containerd")
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        sys.exit("missing binaries (run `make kube-build`): " + ", ".join(missing))
    return paths


# --- configuration files ----------------------------------------------------------------------


def containerd_config() -> Path:
    c = STATE / "containerd"
    c.mkdir(parents=True, exist_ok=True)
    (STATE / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (c / "config.toml").write_text(f"""version = 2
root = "{c}/root"
state = "{c}/state"
[grpc]
  address = "{c}/containerd.sock"
[ttrpc]
  address = "{c}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This VM grants root no CAP_SYS_RESOURCE, so no process may lower its oom_score_adj; the kubelet
  # asks -998 for every sandbox, and runc fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE}/cni/net.d"
""")
    # No ipMasq: pods talk to each other, services and the node only, never beyond this machine.
    cni = {
        "cniVersion": "0.4.0",
        "name": "mnist-serve",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    # Service IPs are outside the pod range: without a default route they are
                    # "network unreachable" before kube-proxy's rules can rewrite them.
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(STATE / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (STATE / "cni" / "net.d" / "10-mnist-serve.conflist").write_text(json.dumps(cni, indent=2))  # JSON only
    return c / "config.toml"


def kubelet_config(d: Path) -> Path:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "cgroupDriver": "cgroupfs",  # PID 1 is not systemd
        "containerRuntimeEndpoint": f"unix://{STATE}/containerd/containerd.sock",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(d / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": "cluster.local",
        "failSwapOn": False,
        "readOnlyPort": 0,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(STATE / "pod-logs"),  # not /var/log/pods: `down` removes it with the rest
        # A shared build machine's disk is often fuller than kubelet's defaults allow.
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
    }
    path = STATE / "kubelet.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def kube_proxy_config() -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(KUBECONFIG)},
        "hostnameOverride": NODE,
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"{NODE_IP}:10256",
        "metricsBindAddress": f"{NODE_IP}:10249",
        # Leave the machine's sysctls alone: no conntrack table resize, no route_localnet.
        "conntrack": {"maxPerCore": 0},
        "iptables": {"localhostNodePorts": False},
        "nodePortAddresses": [f"{NODE_IP}/32"],
    }
    path = STATE / "kube-proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def commands(bins: dict[str, Path], d: Path) -> dict[str, list[str]]:
    kc = str(KUBECONFIG)
    return {
        "containerd": [str(bins["containerd"]), "--config", str(containerd_config())],
        "etcd": [
            str(bins["etcd"]),
            f"--data-dir={STATE}/etcd",
            f"--listen-client-urls={ETCD_CLIENT}",
            f"--advertise-client-urls={ETCD_CLIENT}",
            f"--listen-peer-urls={ETCD_PEER}",
            f"--initial-advertise-peer-urls={ETCD_PEER}",
            f"--initial-cluster=default={ETCD_PEER}",
        ],
        "kube-apiserver": [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={ETCD_CLIENT}",
            f"--bind-address={NODE_IP}",
            f"--advertise-address={NODE_IP}",
            "--secure-port=6443",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={d}/ca.crt",
            f"--tls-cert-file={d}/apiserver.crt",
            f"--tls-private-key-file={d}/apiserver.key",
            f"--kubelet-client-certificate={d}/admin.crt",
            f"--kubelet-client-key={d}/admin.key",
            f"--service-account-key-file={d}/sa.pub",
            f"--service-account-signing-key-file={d}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # The node's name resolves nowhere (no DNS for it): reach the kubelet by its IP.
            "--kubelet-preferred-address-types=InternalIP",
        ],
        "kube-controller-manager": [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--service-account-private-key-file={d}/sa.key",
            f"--root-ca-file={d}/ca.crt",
            f"--cluster-signing-cert-file={d}/ca.crt",
            f"--cluster-signing-key-file={d}/ca.key",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ],
        "kube-scheduler": [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ],
        "kubelet": [
            str(bins["kubelet"]),
            f"--config={kubelet_config(d)}",
            f"--kubeconfig={kc}",
            f"--root-dir={STATE}/kubelet",
            f"--hostname-override={NODE}",
            f"--node-ip={NODE_IP}",
        ],
        "kube-proxy": [str(bins["kube-proxy"]), f"--config={kube_proxy_config()}"],
    }


# --- processes --------------------------------------------------------------------------------


def pid_file(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def log_file(name: str) -> Path:
    return STATE / "logs" / f"{name}.log"


def start(name: str, cmd: list[str]) -> None:
    for sub in ("pids", "logs"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    with log_file(name).open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file(name).write_text(str(proc.pid))


def alive(name: str) -> bool:
    try:
        os.kill(int(pid_file(name).read_text()), 0)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False
    return True


def stop(name: str, grace: float = 20) -> None:
    path = pid_file(name)
    if not path.exists():
        return
    end_group(int(path.read_text()), grace)  # each process leads its own session (start_new_session)
    path.unlink()


def running(name: str):
    """`wait_for`'s abort: fails once the process we started as `name` has exited."""

    def check() -> None:
        if not alive(name):
            raise RuntimeError(f"{name} exited; see {log_file(name)}")

    return check


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(str(REPO / "bin" / "kubectl"), f"--kubeconfig={KUBECONFIG}", *args, check=check)


# --- up and down ------------------------------------------------------------------------------


def up(timeout: float = 300) -> None:
    bins = binaries()
    (REPO / "bin").mkdir(exist_ok=True)
    kubectl_link = REPO / "bin" / "kubectl"
    kubectl_link.unlink(missing_ok=True)
    kubectl_link.symlink_to(bins["kubectl"])
    d = pki.certificates()
    pki.kubeconfig(d)
    network.up()
    cmds = commands(bins, d)
    t0 = time.monotonic()
    try:
        for name in PROCESSES:
            if not alive(name):
                start(name, cmds[name])
            if name == "containerd":
                sock = STATE / "containerd" / "containerd.sock"
                wait_for("containerd's socket", sock.exists, 30, abort=running(name))
                import_pause()
            elif name == "etcd":
                wait_for(
                    "etcd",
                    lambda: run("curl", "-fs", f"{ETCD_CLIENT}/health", check=False).returncode == 0,
                    60,
                    abort=running(name),
                )
            elif name == "kube-apiserver":
                wait_for(
                    "the API server",
                    lambda: kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
                    timeout,
                    abort=running(name),
                )
        wait_for("the node Ready", node_ready, timeout, abort=running("kubelet"))
        server = yaml.safe_load(kubectl("version", "-o", "yaml").stdout)["serverVersion"]["gitVersion"]
        print(f"[kube] Kubernetes {server}: control plane and node Ready in {time.monotonic() - t0:.0f} s")
    except Exception:
        diagnostics()
        down()
        raise
    print(f"[kube] kubeconfig: {KUBECONFIG}")


def node_ready() -> bool:
    out = kubectl(
        "get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False
    )
    return out.stdout.strip() == "True"


def import_pause() -> None:
    """containerd's sandbox_image, built here (FROM scratch + our pause binary): nothing is pulled."""
    if PAUSE_IMAGE in ctr("images", "ls", "-q").stdout.split():
        return
    ctr("images", "import", str(images.from_scratch(PAUSE_IMAGE, cached("pause", "pause"), "pause")))


def diagnostics(lines: int = 40) -> None:
    for name in PROCESSES + ["kuberay-operator"]:
        path = log_file(name)
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            print(f"----- last {len(tail)} lines of {path}", *tail, sep="\n", file=sys.stderr)


def down() -> None:
    try:
        bins = binaries()
    except SystemExit:
        bins = None
    # The kubelet first, so that nothing restarts the pods; then the pods, while containerd is
    # still there to list and delete their tasks; then the shims those leave (children of PID 1,
    # found by our containerd's socket on their command line); then the rest.
    for name in ("kube-proxy", "kubelet"):
        stop(name)
    netns = []
    if alive("containerd"):
        netns = network.pod_netns()
        for task in ctr("tasks", "ls", "-q", check=False).stdout.split():
            ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            ctr("tasks", "delete", "-f", task, check=False)
    sock = f"{STATE}/containerd/containerd.sock"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
    for name in reversed(PROCESSES):
        stop(name)
    for ns in netns:
        run("ip", "netns", "del", ns.name, check=False)
    network.down(bins)
    network.unmount_under(STATE)
    # Runtime dirs containerd and its shims make outside `state` (runc's root, FIFOs, shim
    # sockets): removed when empty, so a containerd of the machine's own keeps what it uses.
    for run_dir in ("runc/k8s.io", "runc", "fifo", "s", ""):
        with contextlib.suppress(OSError):
            (Path("/run/containerd") / run_dir).rmdir()
    keep = {"pki", "kubeconfig"}  # certificates are cheap to keep and make the next `up` faster
    for entry in STATE.iterdir() if STATE.exists() else []:
        if entry.name not in keep:
            run("rm", "-rf", "--one-file-system", str(entry))
    print("[kube] down")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "diagnostics"])
    args = parser.parse_args()
    {"up": up, "down": down, "diagnostics": diagnostics}[args.command]()


if __name__ == "__main__":
    main()
