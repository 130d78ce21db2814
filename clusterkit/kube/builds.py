"""What `clusterkit/kube/build.sh` builds, and where: the wrapper modules that pin each Go project
(clusterkit/kube/go/<wrapper>/go.mod) and the cache of their binaries,
~/.cache/mnist-serve/<name>-<version>/ (MNIST_SERVE_CACHE moves it, as `make KUBE_CACHE=` does)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("MNIST_SERVE_CACHE", Path.home() / ".cache" / "mnist-serve"))
GO = Path(__file__).resolve().parent / "go"
# The KubeRay operator's module, pinned by the `kuberay` wrapper.
KUBERAY = "github.com/ray-project/kuberay/ray-operator"
# An operator built by hand beside the project instead (a release the module proxy does not serve,
# such as v1.7.0): its ray-operator source folder, renamed <anything>@v<version> as the module cache
# names it, holding upstream's `make build` output bin/manager. Never built or fetched by this project.
KUBERAY_SOURCE = os.environ.get("MNIST_SERVE_KUBERAY_SOURCE", "")


# A wrapper may name a newer Go than the one installed (its toolchain line): Go fetches that one
# from the module proxy, which GOTOOLCHAIN=local would refuse.
GO_ENV = os.environ | {"GOTOOLCHAIN": "auto"}


def go_version(wrapper: str, module: str) -> str:
    """The version of `module` that wrapper `wrapper` pins, e.g. v1.34.11 for k8s.io/kubernetes."""
    return subprocess.run(
        ["go", "list", "-m", "-f", "{{.Version}}", module],
        cwd=GO / wrapper,
        capture_output=True,
        text=True,
        check=True,
        env=GO_ENV,
    ).stdout.strip()


def cached(name: str, binary: str) -> Path:
    """The newest cached build of `binary` (build.sh keys some folders by a source hash too)."""
    found = sorted(CACHE.glob(f"{name}-*/{binary}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no {name} build in {CACHE}: run `make kube-build`")
    return found[-1]


def module_source(wrapper: str, module: str) -> Path:
    """The source tree of `module` at the version wrapper `wrapper` pins, from the Go module cache
    (downloaded from the module proxy, checked against the wrapper's go.sum, if not there yet)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=GO / wrapper,
        capture_output=True,
        text=True,
        env=GO_ENV,
    )
    if out.returncode != 0:
        raise RuntimeError(f"go mod download {module} (in {GO / wrapper}) failed: {out.stdout}{out.stderr}")
    return Path(json.loads(out.stdout)["Dir"])


def kuberay() -> tuple[Path, Path]:
    """The KubeRay operator kube-up runs: its source tree (CRDs, RBAC; named ...@v<version>) and binary."""
    if KUBERAY_SOURCE:
        root = Path(KUBERAY_SOURCE)
        if "@v" not in root.name or not (root / "bin" / "manager").is_file():
            raise SystemExit(
                f"MNIST_SERVE_KUBERAY_SOURCE={root}: expected a ray-operator source folder named "
                "...@v<version> holding bin/manager (upstream's `make build`)"
            )
        return root, root / "bin" / "manager"
    return module_source("kuberay", KUBERAY), cached("kuberay", "ray-operator")
