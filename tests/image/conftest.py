"""The image built and run with podman, the way KubeRay runs it, on a locally made Ray base.

No registry is reachable here, so rayproject/ray is replaced by a stand-in (standin.Containerfile:
Debian 12's Python 3.11, the same Ray, the Ray image's user and paths) and image/Dockerfile is
built on it through its BASE_IMAGE argument. Torch comes from a host wheelhouse (containers see
PyPI, not this machine's wheel cache); both are mounted into the builds only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from clusterkit.localray import REPO
from clusterkit.podman import CONTAINERS_CONF, exists, podman

RAY_VERSION = "2.60.0"
OS_IMAGE = "localhost/mnist-serve-standin-os:bookworm"
BASE_IMAGE = f"localhost/mnist-serve-standin-ray:{RAY_VERSION}-py311-cpu"
IMAGE = f"localhost/mnist-serve:0.1.0-ray{RAY_VERSION}-cpu"
WHEELHOUSE = Path(os.environ.get("WHEELHOUSE", "/tmp/mnist-serve-wheelhouse"))
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
# Where builds see it: not over the image's own bundle, which apt may rewrite.
BUILD_CA = "/etc/ssl/host-ca.crt"


@pytest.fixture(scope="session")
def containers_conf(tmp_path_factory) -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `make test-image` installs it with apt")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = str(conf)


@pytest.fixture(scope="session")
def build_mounts(containers_conf, tmp_path_factory) -> list[str]:
    """Volumes for RUN steps: the host's CA bundle (PyPI through this machine's proxy) and a pip
    config that also looks in the torch wheelhouse."""
    if not any(WHEELHOUSE.glob("torch-*.whl")):
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(REPO / ".venv/bin/pip"),
                "download",
                "--quiet",
                "-d",
                str(WHEELHOUSE),
                "torch==2.14.1",
                "torchvision==0.29.1",
            ],
            check=True,
            timeout=1800,
        )
    pip_conf = tmp_path_factory.mktemp("pip") / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {BUILD_CA}\nfind-links = /wheelhouse\n")
    return [
        f"--volume={HOST_CA}:{BUILD_CA}:ro",
        f"--volume={WHEELHOUSE}:/wheelhouse:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
    ]


@pytest.fixture(scope="session")
def base_image(build_mounts) -> str:
    if not exists(OS_IMAGE):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as root:
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3",
                    "bookworm",
                    root,
                    "http://deb.debian.org/debian",
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                ["podman", "import", "-", OS_IMAGE], stdin=tar.stdout, check=True, capture_output=True
            )
            tar.wait()
    if not exists(BASE_IMAGE):
        args = ["--build-arg", f"OS_IMAGE={OS_IMAGE}", "--build-arg", f"RAY_VERSION={RAY_VERSION}"]
        containerfile = REPO / "tests" / "image" / "standin.Containerfile"
        podman(
            "build",
            *build_mounts,
            *args,
            "-t",
            BASE_IMAGE,
            "-f",
            str(containerfile),
            str(containerfile.parent),
        )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def image(base_image, build_mounts) -> str:
    """`make image`, with podman, on the stand-in base."""
    make = ["make", "--no-print-directory", "image", "CONTAINER_TOOL=podman", f"BASE_IMAGE={base_image}"]
    make += [f"IMAGE={IMAGE}", f"IMAGE_BUILD_OPTS={' '.join(build_mounts)}"]
    result = subprocess.run(make, cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return IMAGE
