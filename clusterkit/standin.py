"""The project's image built with podman on a locally made Ray base, where no registry is reachable.

rayproject/ray is replaced by a stand-in (image/standin.Containerfile: Debian 12's Python 3.11 from
debootstrap, the same Ray, the Ray image's user and paths) and image/Dockerfile is built on it
through its BASE_IMAGE argument (`make image`). Torch comes from a host wheelhouse (containers see
PyPI, not this machine's wheel cache); it and the host's CA bundle are mounted into the builds only.
The image tests (`make test-image`) and the real cluster (`make kube-up`) both run this image.

    python -m clusterkit.standin     # builds what is missing; prints the image's tag
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

from clusterkit.localray import REPO
from clusterkit.podman import exists, podman, use_containers_conf

RAY_VERSION = "2.60.0"
OS_IMAGE = "localhost/mnist-serve-standin-os:bookworm"
CONTAINERFILE = REPO / "image" / "standin.Containerfile"
# Tagged by the Containerfile's content: an edit builds a new base rather than reusing a stale one.
BASE_IMAGE = (
    f"localhost/mnist-serve-standin-ray:{RAY_VERSION}-py311-cpu-"
    + hashlib.sha256(CONTAINERFILE.read_bytes()).hexdigest()[:12]
)
IMAGE = f"localhost/mnist-serve:0.1.0-ray{RAY_VERSION}-cpu"
WHEELHOUSE = Path(os.environ.get("WHEELHOUSE", "/tmp/mnist-serve-wheelhouse"))
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
# Where builds see it: not over the image's own bundle, which apt may rewrite.
BUILD_CA = "/etc/ssl/host-ca.crt"


def build_options(workdir: Path) -> list[str]:
    """For RUN steps: the host's network (podman's own would set up NAT rules and turn on IP
    forwarding on this machine, and leave them), the host's CA bundle (PyPI through this machine's
    proxy) and a pip config that also looks in the torch wheelhouse (filled from the host's pip
    cache once)."""
    if not any(WHEELHOUSE.glob("torch-*.whl")):
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        pins = ["torch==2.14.1", "torchvision==0.29.1"]
        pip = [str(REPO / ".venv/bin/pip"), "download", "--quiet", "-d", str(WHEELHOUSE), *pins]
        subprocess.run(pip, check=True, timeout=1800)
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {BUILD_CA}\nfind-links = /wheelhouse\n")
    return [
        "--network=host",
        f"--volume={HOST_CA}:{BUILD_CA}:ro",
        f"--volume={WHEELHOUSE}:/wheelhouse:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
    ]


def os_image() -> str:
    """Debian 12 with Python 3.11, from debootstrap, imported into podman."""
    if not exists(OS_IMAGE):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as root:
            debootstrap = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", root]
            subprocess.run(
                [*debootstrap, "http://deb.debian.org/debian"], check=True, capture_output=True, timeout=900
            )
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                ["podman", "import", "-", OS_IMAGE], stdin=tar.stdout, check=True, capture_output=True
            )
            tar.wait()
    return OS_IMAGE


def base_image(options: list[str]) -> str:
    if not exists(BASE_IMAGE):
        args = ["--build-arg", f"OS_IMAGE={os_image()}", "--build-arg", f"RAY_VERSION={RAY_VERSION}"]
        podman(
            "build", *options, *args, "-t", BASE_IMAGE, "-f", str(CONTAINERFILE), str(CONTAINERFILE.parent)
        )
    return BASE_IMAGE


def image() -> str:
    """`make image`, with podman, on the stand-in base; its tag."""
    use_containers_conf()
    with tempfile.TemporaryDirectory() as workdir:
        options = build_options(Path(workdir))
        make = ["make", "--no-print-directory", "image", "CONTAINER_TOOL=podman"]
        make += [
            f"BASE_IMAGE={base_image(options)}",
            f"IMAGE={IMAGE}",
            f"IMAGE_BUILD_OPTS={' '.join(options)}",
        ]
        result = subprocess.run(make, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"make image failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return IMAGE


def main() -> None:
    started = time.monotonic()
    tag = image()
    print(f"[standin] {tag} ready after {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
