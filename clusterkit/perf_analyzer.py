"""NVIDIA's perf_analyzer, Triton's standard Open Inference Protocol load client, on Debian 12.

The perf-analyzer wheel on PyPI holds one prebuilt binary that needs glibc >= 2.38 and a newer
libstdc++ than Debian 12 has (2.36), and no container image can be pulled here. So the binary runs
in a Debian 13 root made by debootstrap, once per pinned version, with `podman run --rootfs`: no
image, nothing left mounted, the host's network (so -u 127.0.0.1:8000 reaches a server running
here) and the working directory shared at the same path (for --input-data, -f and other files).

    python -m clusterkit.perf_analyzer -m mnist -u 127.0.0.1:8000 --concurrency-range 1:8
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from clusterkit.kube.builds import CACHE
from clusterkit.podman import use_containers_conf
from mnist_serve.signature import INPUT

VERSION = "2.60.0"
# The wheels' sha256 as PyPI publishes them (https://pypi.org/pypi/perf-analyzer/json), per machine.
WHEEL_SHA256 = {
    "x86_64": "23ef56b107ae9233e5cf09fbdf508dd9b936a52f1bae2f63f53c8117087b3f25",
    "aarch64": "c2ece0adb7760ea1abc258222d80bf8e367fa9639401406b96da2c9b55131d29",
}
SUITE = "trixie"
# The mirror this machine's apt uses (/etc/apt/sources.list.d/debian.sources).
MIRROR = "http://deb.debian.org/debian"
# What the binary links beyond libc (objdump -p: NEEDED), named explicitly rather than left to
# whatever minbase happens to pull in.
LIBRARIES = ("libstdc++6", "libgcc-s1", "libssl3t64", "zlib1g")
HOME = CACHE / f"perf-analyzer-{VERSION}"
ROOTFS = HOME / "rootfs"
# Written last: a folder without it is a build that was interrupted.
MARKER = HOME / "complete"


def command(*args: str, workdir: Path | None = None) -> list[str]:
    """The argv that runs perf_analyzer with `args` in `workdir` (default: the current directory),
    which it shares with the host. build() must have run: it also points podman at this VM's
    runtime and ulimits (clusterkit/podman.py's containers.conf)."""
    cwd = workdir or Path.cwd()
    return [
        "podman",
        "run",
        "--rm",
        "--network=host",
        # The cached root stays as built: podman writes nothing into it.
        "--read-only",
        f"--volume={cwd}:{cwd}",
        f"--workdir={cwd}",
        # A flag: the root is the first argument, where an image would be.
        "--rootfs",
        str(ROOTFS),
        "perf_analyzer",
        *args,
    ]


def input_data(images: np.ndarray) -> str:
    """Images as perf_analyzer's --input-data JSON: one per step, in the model configuration's dims
    (with `-b N` it sends N consecutive steps as one request)."""
    steps = [{INPUT.name: {"content": i.ravel().tolist(), "shape": list(INPUT.shape[1:])}} for i in images]
    return json.dumps({"data": steps})


def build() -> None:
    """The Debian 13 root with the pinned perf_analyzer, unless it is already complete."""
    use_containers_conf()
    if MARKER.exists():
        return
    if HOME.exists():
        # debootstrap mounts /proc and /sys in the root while it works; a killed one leaves them.
        unmount_under(HOME)
        shutil.rmtree(HOME)
    print(f"[perf_analyzer] building {VERSION} in {HOME} (about 30 s)", file=sys.stderr)
    ROOTFS.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=HOME) as download:
        # First: a wrong pin or an unknown machine fails in seconds, not after debootstrap.
        path = wheel(Path(download))
        debootstrap = ["debootstrap", "--variant=minbase", f"--include={','.join(LIBRARIES)}", SUITE]
        # Its progress goes to stdout, its errors to stderr.
        subprocess.run(
            [*debootstrap, str(ROOTFS), MIRROR], check=True, stdout=subprocess.DEVNULL, timeout=900
        )
        binary = ROOTFS / "usr/local/bin/perf_analyzer"
        # The binary only: the wheel's Python wrapper adds nothing and drops the exit status.
        with zipfile.ZipFile(path) as archive:
            binary.write_bytes(archive.read("perf_analyzer/bin/perf_analyzer"))
    binary.chmod(0o755)
    # debootstrap's downloads, 90 of its 230 MB: this root is rebuilt per pin, never upgraded.
    for downloads in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(ROOTFS / downloads)
        (ROOTFS / downloads).mkdir()
    # Proves the root has every library the binary needs before it counts as built.
    check = subprocess.run(command("--version"), capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"perf_analyzer does not run in {ROOTFS}:\n{check.stderr}")
    MARKER.write_text(f"{VERSION}\n")


def wheel(download: Path) -> Path:
    """The pinned wheel for this machine, downloaded with pip and checked against its sha256."""
    machine = platform.machine()
    pinned = WHEEL_SHA256[machine]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    pip += ["--platform", f"manylinux_2_38_{machine}", "--dest", str(download), f"perf-analyzer=={VERSION}"]
    subprocess.run(pip, check=True, timeout=600)
    (path,) = download.glob("*.whl")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != pinned:
        raise RuntimeError(f"{path.name}: sha256 {digest}, pinned {pinned}")
    return path


def unmount_under(folder: Path) -> None:
    # Field 5 of mountinfo is the mount point (spaces escaped as \040, which we never create).
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if Path(p).is_relative_to(folder)), reverse=True):
        subprocess.run(["umount", point], check=True)


if __name__ == "__main__":
    build()
    argv = command(*sys.argv[1:])
    # podman in this process's place: its exit status and signals are perf_analyzer's.
    os.execvp(argv[0], argv)
