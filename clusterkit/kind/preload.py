"""The images a node made by clusterkit.kind.nodeimage starts with, as kind's node images carry
them: the ones `kubeadm config images list` names (the pause image replaced by the sandbox image
the node's containerd is told to use, as kind's builder does), built FROM scratch around the
binaries of `make kind-build`, and the default StorageClass's local-path-provisioner with the
manifest kind applies from /kind/manifests. They are imported into the node's containerd store
with a containerd of the node's own version, as content only (kind's imageimporter.go)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from clusterkit.kube import images
from clusterkit.kube.builds import GO
from clusterkit.poll import wait_for

PAUSE = "localhost/mnist-serve-pause:kind"
IMAGE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def storage_manifest(root: Path, provisioner: str, helper: str) -> None:
    """local-path-provisioner's own manifest (deploy/ in its module) as kind ships it: the default
    StorageClass `standard`, the images built here."""
    module = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/rancher/local-path-provisioner"],
        cwd=GO / "local-path-provisioner",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    objects = [
        o for o in yaml.safe_load_all((Path(module) / "deploy" / "local-path-storage.yaml").read_text()) if o
    ]
    for obj in objects:
        if obj["kind"] == "StorageClass":
            obj["metadata"]["name"] = "standard"
            obj["metadata"].setdefault("annotations", {})["storageclass.kubernetes.io/is-default-class"] = (
                "true"
            )
        elif obj["kind"] == "Deployment":
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            container["image"], container["imagePullPolicy"] = provisioner, "IfNotPresent"
        elif obj["kind"] == "ConfigMap" and "helperPod.yaml" in obj["data"]:
            pod = yaml.safe_load(obj["data"]["helperPod.yaml"])
            (container,) = pod["spec"]["containers"]
            container["image"], container["imagePullPolicy"] = helper, "IfNotPresent"
            obj["data"]["helperPod.yaml"] = yaml.safe_dump(pod)
    (root / "kind" / "manifests" / "default-storage.yaml").write_text(yaml.safe_dump_all(objects))


def archives(root: Path, bins: dict[str, Path], version: str, work: Path) -> list[Path]:
    """OCI archives of every image the node starts with: kubeadm's list (the pause image
    replaced by the sandbox image above, as kind's builder does) and the storage provisioner's."""
    wanted = subprocess.run(
        [bins["kubeadm"], "config", "images", "list", "--kubernetes-version", version],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    iptables = images.stage(
        root,
        [
            "/usr/sbin/xtables-nft-multi",
            "/usr/lib/x86_64-linux-gnu/xtables",
            "/usr/sbin/conntrack",
        ],
        work / "iptables",
    )
    for name in (
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ):
        (iptables / "usr" / "sbin" / name).symlink_to("xtables-nft-multi")
    recipes = {
        name: ({f"/usr/local/bin/{name}": bins[name]}, None, None)
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
    }
    recipes["kube-proxy"] = ({"/": iptables, "/usr/local/bin/kube-proxy": bins["kube-proxy"]}, None, None)
    recipes["coredns"] = ({"/coredns": bins["coredns"]}, ["/coredns"], None)
    archives = []
    for tag in wanted:
        name = tag.rsplit("/", 1)[1].split(":")[0]
        if name == "pause":
            continue
        if name not in recipes:
            raise RuntimeError(f"kubeadm wants {tag}, which this builder does not make")
        files, entrypoint, user = recipes[name]
        archives.append(
            images.build(tag, work / f"{name}.tar", files, entrypoint=entrypoint, user=user, env=IMAGE_ENV)
        )
    archives.append(
        images.build(
            PAUSE, work / "pause.tar", {"/pause": bins["pause"]}, entrypoint=["/pause"], user="65535:65535"
        )
    )
    lpp = bins["local-path-provisioner"].parent.name.removeprefix("local-path-provisioner-")
    provisioner = f"localhost/mnist-serve-local-path-provisioner:{lpp}"
    helper = "localhost/mnist-serve-local-path-helper:bookworm"
    archives.append(
        images.build(
            provisioner,
            work / "lpp.tar",
            {"/usr/bin/local-path-provisioner": bins["local-path-provisioner"]},
            env=IMAGE_ENV,
        )
    )
    shell = images.stage(
        root, ["/usr/bin/dash", "/usr/bin/mkdir", "/usr/bin/rm", "/usr/bin/chmod"], work / "helper"
    )
    (shell / "usr" / "bin" / "sh").symlink_to("dash")
    archives.append(images.build(helper, work / "helper.tar", {"/": shell}, env=IMAGE_ENV))
    storage_manifest(root, provisioner, helper)
    return archives


def preload(root: Path, ctr: Path, containerd: Path, archives: list[Path], work: Path) -> None:
    """Import the archives into the node's containerd store (its /var/lib/containerd) with a
    containerd of the node's own version, run here for the purpose: content only, unpacked when a
    pod first uses it, pinned so the kubelet's image GC keeps them (kind's imageimporter.go)."""
    sock = work / "containerd.sock"
    config = work / "containerd.toml"
    config.write_text(
        f'version = 3\nroot = "{root}/var/lib/containerd"\nstate = "{work}/state"\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
    )
    log = (work / "containerd.log").open("w")
    process = subprocess.Popen([containerd, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("containerd's socket", sock.exists, 60, interval=0.2)
        for archive in archives:
            subprocess.run(
                [
                    ctr,
                    f"--address={sock}",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "--label=io.cri-containerd.pinned=pinned",
                    "--all-platforms",
                    "--no-unpack",
                    archive,
                ],
                check=True,
                capture_output=True,
            )
        listed = subprocess.run(
            [ctr, f"--address={sock}", "--namespace=k8s.io", "images", "list", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        named = sorted(name for name in listed if not name.startswith("sha256:"))
        print("[kind] images in the node image: " + ", ".join(named), file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=60)
