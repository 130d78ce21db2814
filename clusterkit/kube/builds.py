"""What `clusterkit/kube/build.sh` builds, and where: the wrapper modules that pin each Go project
(clusterkit/kube/go/<wrapper>/go.mod) and the cache of their binaries,
~/.cache/mnist-serve/<name>-<version>/ (MNIST_SERVE_CACHE moves it, as `make KUBE_CACHE=` does)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("MNIST_SERVE_CACHE", Path.home() / ".cache" / "mnist-serve"))
GO = Path(__file__).resolve().parent / "go"


def go_version(wrapper: str, module: str) -> str:
    """The version of `module` that wrapper `wrapper` pins, e.g. v1.34.11 for k8s.io/kubernetes."""
    return subprocess.run(
        ["go", "list", "-m", "-f", "{{.Version}}", module],
        cwd=GO / wrapper,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def cached(name: str, binary: str) -> Path:
    """The newest cached build of `binary` (build.sh keys some folders by a source hash too)."""
    found = sorted(CACHE.glob(f"{name}-*/{binary}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no {name} build in {CACHE}: run `make kube-build`")
    return found[-1]
