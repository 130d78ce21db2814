"""podman from Python, for the image tests."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

# podman on this VM: runc (crun fails on its hybrid cgroups) and the ulimits Ray needs.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""


def use_containers_conf() -> None:
    """Point podman at CONTAINERS_CONF for this process and its children (one file, shared)."""
    if "CONTAINERS_CONF" not in os.environ:
        conf = Path(tempfile.gettempdir()) / "mnist-serve-containers.conf"
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            conf.write_text(CONTAINERS_CONF)
        os.environ["CONTAINERS_CONF"] = str(conf)


def podman(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"podman {' '.join(args[:3])}... failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0
