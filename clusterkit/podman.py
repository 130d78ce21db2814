"""podman from Python, for the image tests."""

from __future__ import annotations

import subprocess


def podman(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"podman {' '.join(args[:3])}... failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0
