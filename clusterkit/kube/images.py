"""The cluster's own images, built with podman FROM scratch around the static binaries that
`clusterkit/kube/build.sh` cached (no registry is reachable), saved as OCI archives that
`ctr images import` loads into the cluster's containerd."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from clusterkit.podman import exists, podman, use_containers_conf

CACHE_DIR = Path.home() / ".cache" / "mnist-serve"


def from_scratch(tag: str, binary: Path, entrypoint: str) -> Path:
    """`tag` holding only `binary` at /`entrypoint`, saved as an OCI archive next to the binary."""
    archive = binary.parent / f"{entrypoint}-image.tar"
    if archive.exists():
        return archive
    use_containers_conf()
    if not exists(tag):
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copy2(binary, Path(ctx) / entrypoint)
            (Path(ctx) / "Containerfile").write_text(
                f"FROM scratch\nCOPY {entrypoint} /{entrypoint}\nUSER 65532:65532\n"
                f'ENTRYPOINT ["/{entrypoint}"]\n'
            )
            podman("build", "-t", tag, ctx)
    podman("save", "--format", "oci-archive", "-o", str(archive), tag)
    return archive


def cached(name: str, binary: str) -> Path:
    """The newest cached build of `binary` (build.sh keys its folders <name>-<version>)."""
    found = sorted(CACHE_DIR.glob(f"{name}-*/{binary}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no {name} build in {CACHE_DIR}: run `make kube-build`")
    return found[-1]


def pause_archive() -> Path:
    from clusterkit.kube.cluster import PAUSE_IMAGE

    return from_scratch(PAUSE_IMAGE, cached("pause", "pause"), "pause")
