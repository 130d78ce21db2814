"""A kind node image made on this machine, offline, for `make kind-up KIND_LOCAL=1`.

`kind build node-image` pulls etcd, CoreDNS, pause, kindnetd and local-path images, so here the
image is assembled the way kind's own base and node images are (kind's images/base/Dockerfile and
pkg/build/nodeimage, read at the pinned KIND_VERSION), from pieces made here:

- the root: Debian 12 from debootstrap with the packages kind's base image installs, and kind's
  base files (entrypoint, systemd units, containerd config) from the kind Go module;
- containerd, crictl and the CNI plugins at kind's pins, Kubernetes' kubeadm, kubelet and kubectl
  (all from `make kube-build`), and Debian's runc;
- the images kubeadm deploys, named as `kubeadm config images list` names them and built FROM
  scratch around the same builds (kube-proxy with iptables and its libraries staged in), plus a
  local-path provisioner for the default StorageClass, imported into the node's containerd the way
  kind's builder does it (unpacked at first use, pinned against garbage collection);
- a static CNI network instead of kindnetd (not on the Go module proxy): the ptp network kindnetd
  would write, for the one node of k8s/kind/cluster.yaml (10.244.0.0/24, its first pod range);
- in containerd's config, the sandbox image built here and `restrict_oom_score_adj` (this host
  gives root no CAP_SYS_RESOURCE, so no process may lower its OOM score).

The image is tagged `mnist-serve/kind-node:<kubernetes version>` and labelled with a hash of its
inputs; it is rebuilt when they change. The engine keeps it in its data root (the build cache).

    python -m clusterkit.kind.nodeimage --kind-version v0.33.0     # the tag on stdout, progress on stderr
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from clusterkit.kind import preload
from clusterkit.kind.engine import docker
from clusterkit.kube.builds import CACHE, cached, go_version

REPOSITORY = "mnist-serve/kind-node"
LABEL = "dev.mnist-serve.inputs"
POD_RANGE = "10.244.0.0/24"  # the first node's podCIDR out of kind's default podSubnet 10.244.0.0/16
# What kind's base image installs (images/base/Dockerfile), less the network-storage packages,
# plus runc (kind builds its own).
PACKAGES = [
    "systemd",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "fuse-overlayfs",
    "e2fsprogs",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    "runc",
]
MIRROR = "http://deb.debian.org/debian"


def kind_module(version: str) -> Path:
    """The kind module at `version`, from the Go module proxy (its images/base/files)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/kind@{version}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return Path(json.loads(out.stdout)["Dir"])


def pieces() -> dict[str, Path]:
    """Every binary the image is made of, by name."""
    k8s = CACHE / f"kubernetes-{go_version('kubernetes', 'k8s.io/kubernetes')}"
    containerd = CACHE / f"containerd-{go_version('containerd', 'github.com/containerd/containerd/v2')}"
    crictl = CACHE / f"cri-tools-{go_version('cri-tools', 'sigs.k8s.io/cri-tools')}"
    cni = CACHE / f"cni-plugins-{go_version('cni-plugins', 'github.com/containernetworking/plugins')}"
    lpp_version = go_version("local-path-provisioner", "github.com/rancher/local-path-provisioner")
    lpp = CACHE / f"local-path-provisioner-{lpp_version}"
    found = {
        **{name: k8s / name for name in ("kubeadm", "kubelet", "kubectl", "kube-apiserver")},
        **{name: k8s / name for name in ("kube-controller-manager", "kube-scheduler", "kube-proxy")},
        **{name: containerd / name for name in ("containerd", "ctr", "containerd-shim-runc-v2")},
        "crictl": crictl / "crictl",
        **{name: cni / name for name in ("host-local", "loopback", "ptp", "portmap")},
        "local-path-provisioner": lpp / "local-path-provisioner",
        "etcd": CACHE / f"etcd-{go_version('etcd', 'go.etcd.io/etcd/server/v3')}" / "etcd",
        "coredns": cached("coredns", "coredns"),
        "pause": cached("pause", "pause"),
    }
    missing = [str(path) for path in found.values() if not path.is_file()]
    if missing:
        raise SystemExit("missing builds (run `make kube-build KUBE_BUILD=kind`): " + ", ".join(missing))
    return found


def inputs_hash(kind_version: str, bins: dict[str, Path]) -> str:
    digest = hashlib.sha256(f"{kind_version} {PACKAGES}".encode())
    for module in (Path(__file__), Path(preload.__file__)):
        digest.update(module.read_bytes())
    for name in sorted(bins):
        digest.update(f"{name} {bins[name].parent.name} {bins[name].stat().st_size}".encode())
    return digest.hexdigest()[:16]


def kubernetes_version(bins: dict[str, Path]) -> str:
    out = subprocess.run(
        [bins["kubeadm"], "version", "-o", "short"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


# --- the root ---------------------------------------------------------------------------------


def debootstrap(root: Path) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        "bookworm",
        str(root),
        MIRROR,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def base_files(root: Path, kind: Path) -> None:
    """kind's images/base/files, with the modes its Dockerfile COPYs them with, then its RUN steps
    that shape systemd for a container."""
    files = kind / "images" / "base" / "files"
    for source in files.rglob("*"):
        if source.is_dir():
            continue
        rel = source.relative_to(files)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        executable = rel.parts[:3] == ("usr", "local", "bin") or rel.parts[:2] == ("kind", "bin")
        target.chmod(0o755 if executable else 0o644)
    for d in (root / "kind", root / "kind" / "bin"):
        d.chmod(0o755)
    systemd = root / "lib" / "systemd" / "system"
    (systemd / "sysinit.target.wants" / "systemd-tmpfiles-setup.service").unlink(missing_ok=True)
    for pattern in (
        "lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "lib/systemd/system/local-fs.target.wants/*",
        "lib/systemd/system/sockets.target.wants/*udev*",
        "lib/systemd/system/sockets.target.wants/*initctl*",
        "lib/systemd/system/basic.target.wants/*",
    ):
        for path in root.glob(pattern):
            path.unlink()
    with (root / "etc" / "systemd" / "journald.conf").open("a") as conf:
        conf.write("ReadKMsg=no\n")
    (root / "sbin" / "init").unlink(missing_ok=True)
    (root / "sbin" / "init").symlink_to("/usr/lib/systemd/systemd")
    systemctl = ["chroot", str(root), "systemctl"]
    units = ["kubelet.service", "containerd.service", "undo-mount-hacks.service"]
    subprocess.run([*systemctl, "enable", *units], check=True, capture_output=True)
    subprocess.run([*systemctl, "mask", "systemd-binfmt.service"], check=True, capture_output=True)
    (root / "etc" / "kubernetes" / "manifests").mkdir(parents=True, exist_ok=True)


def install(root: Path, bins: dict[str, Path], version: str) -> None:
    """The binaries where kind's images put them, containerd's base OCI spec as kind makes it, and
    /kind/version, which `kind create` reads."""
    places = {
        "usr/local/bin": ("containerd", "ctr", "containerd-shim-runc-v2", "crictl"),
        "usr/bin": ("kubeadm", "kubelet", "kubectl"),
        "opt/cni/bin": ("host-local", "loopback", "ptp", "portmap"),
    }
    for place, names in places.items():
        (root / place).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy2(bins[name], root / place / name)
            (root / place / name).chmod(0o755)
    spec = json.loads(
        subprocess.run([bins["ctr"], "oci", "spec"], capture_output=True, text=True, check=True).stdout
    )
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
        {"path": "/kind/bin/mount-product-files.sh"}
    )
    spec["process"].pop("rlimits", None)
    (root / "etc" / "containerd" / "cri-base.json").write_text(json.dumps(spec, indent=2))
    (root / "kind" / "version").write_text(version)


def containerd_config(root: Path) -> None:
    """kind's containerd config with this image's two changes; each line must be there as kind
    wrote it, so a new kind release that moves them fails here rather than silently."""
    path = root / "etc" / "containerd" / "config.toml"
    config = path.read_text()
    for old, new in (
        ('sandbox_image = "registry.k8s.io/pause:3.10"', f'sandbox_image = "{preload.PAUSE}"'),
        ("restrict_oom_score_adj = false", "restrict_oom_score_adj = true"),
    ):
        if old not in config:
            raise RuntimeError(f"kind's {path.relative_to(root)} no longer has {old!r}")
        config = config.replace(old, new)
    path.write_text(config)


def network(root: Path) -> None:
    """The ptp network kindnetd would write, static; /kind/manifests/default-cni.yaml, which kind
    applies in place of kindnetd's manifest, records it in the cluster."""
    conflist = {
        "cniVersion": "0.4.0",
        "name": "kindnet",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "dataDir": "/run/cni-ipam-state",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": POD_RANGE}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    text = json.dumps(conflist, indent=2)
    (root / "etc" / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "cni" / "net.d" / "10-kindnet.conflist").write_text(text)
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "static-cni", "namespace": "kube-system"},
        "data": {
            "README": "This node image has a static ptp network for one node, written at build time "
            "(clusterkit/kind/nodeimage.py): kindnetd cannot be built offline.",
            "10-kindnet.conflist": text,
        },
    }
    (root / "kind" / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "kind" / "manifests" / "default-cni.yaml").write_text(yaml.safe_dump(manifest))


# --- the whole --------------------------------------------------------------------------------


def pack(root: Path, tag: str, key: str) -> None:
    """The root as a one-layer image in the engine, with the metadata of kind's node images. Docker
    20.10's import takes no STOPSIGNAL, so a one-line build on top adds it (and the inputs label)."""
    flat = f"{REPOSITORY}:flat-{key}"
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.Popen(
        ["docker", "import", "-", flat],
        stdin=tar.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tar.stdout.close()  # docker's end only: tar gets SIGPIPE if docker stops reading
    out, err = imported.communicate()
    if tar.wait() != 0 or imported.returncode != 0:
        raise RuntimeError(f"docker import failed: {err.strip()}")
    dockerfile = "\n".join(
        [
            f"FROM {flat}",
            "ENV container=docker",  # systemd's container interface (kind's base image)
            "STOPSIGNAL SIGRTMIN+3",  # systemd stops on it; SIGTERM re-executes it
            'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
            f"LABEL {LABEL}={key}",
        ]
    )
    build = subprocess.run(
        ["docker", "build", "-t", tag, "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},  # the classic builder: no buildx needed
    )
    docker("rmi", flat, check=False)
    if build.returncode != 0:
        raise RuntimeError(f"docker build failed: {build.stderr.strip()}")


def build(kind_version: str) -> str:
    bins = pieces()
    version = kubernetes_version(bins)
    tag = f"{REPOSITORY}:{version}"
    key = inputs_hash(kind_version, bins)
    have = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', tag, check=False)
    if have.returncode == 0 and have.stdout.strip() == key:
        return tag
    started = time.monotonic()
    kind = kind_module(kind_version)
    with tempfile.TemporaryDirectory(prefix="mnist-serve-kind-node-", dir="/var/tmp") as tmp:
        root, work = Path(tmp) / "root", Path(tmp) / "work"
        work.mkdir()
        debootstrap(root)
        print(f"[kind] debootstrap: {time.monotonic() - started:.0f} s", file=sys.stderr)
        base_files(root, kind)
        install(root, bins, version)
        containerd_config(root)
        network(root)
        archives = preload.archives(root, bins, version, work)
        preload.preload(root, bins["ctr"], bins["containerd"], archives, work)
        pack(root, tag, key)
    print(f"[kind] node image {tag} built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind-version", required=True, help="the kind release whose base files to use")
    print(build(parser.parse_args().kind_version))


if __name__ == "__main__":
    main()
