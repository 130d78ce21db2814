"""The clusters' own images, built with podman FROM scratch around the static binaries that
`clusterkit/kube/build.sh` cached (no registry is reachable), saved as OCI archives that
`ctr images import` loads into a cluster's containerd. A binary that needs more than itself
(kube-proxy runs iptables) gets a staged tree: programs from a Debian root with the shared
libraries they load, as distroless images are made."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from clusterkit.podman import podman, use_containers_conf


def build(
    tag: str,
    archive: Path,
    files: dict[str, Path],
    *,
    entrypoint: list[str] | None = None,
    user: str | None = None,
    env: dict[str, str] | None = None,
    stop_signal: str | None = None,
) -> Path:
    """`tag`, FROM scratch: each host file of `files` at its image path, a staged tree's contents
    under its path, saved as an OCI archive at `archive` (kept: a second call reuses it)."""
    if archive.exists():
        return archive
    use_containers_conf()
    with tempfile.TemporaryDirectory() as ctx:
        lines = ["FROM scratch"]
        for i, (target, source) in enumerate(files.items()):
            if source.is_dir():
                shutil.copytree(source, Path(ctx) / f"f{i}", symlinks=True)
                lines.append(f"COPY f{i}/ {target}")
            else:
                shutil.copy2(source, Path(ctx) / f"f{i}")
                lines.append(f"COPY f{i} {target}")
        lines += [f"ENV {key}={value}" for key, value in (env or {}).items()]
        if user:
            lines.append(f"USER {user}")
        if stop_signal:  # what containerd sends on a pod's deletion instead of SIGTERM
            lines.append(f"STOPSIGNAL {stop_signal}")
        if entrypoint:
            lines.append("ENTRYPOINT [" + ", ".join(f'"{word}"' for word in entrypoint) + "]")
        (Path(ctx) / "Containerfile").write_text("\n".join(lines) + "\n")
        podman("build", "-t", tag, ctx)  # identical layers come from podman's cache
    archive.parent.mkdir(parents=True, exist_ok=True)
    podman("save", "--format", "oci-archive", "-o", f"{archive}.tmp", tag)
    os.replace(f"{archive}.tmp", archive)
    return archive


def from_scratch(tag: str, binary: Path, entrypoint: str, stop_signal: str | None = None) -> Path:
    """`tag` holding only `binary` at /`entrypoint`, run as a non-root user, saved next to the binary."""
    return build(
        tag,
        binary.parent / f"{entrypoint}-image.tar",
        {f"/{entrypoint}": binary},
        entrypoint=[f"/{entrypoint}"],
        user="65532:65532",
        stop_signal=stop_signal,
    )


# Debian 12 merged /usr: these are symlinks, and ELF interpreters are named through them.
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
LIBRARY = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")


def stage(root: Path, paths: list[str], out: Path) -> Path:
    """Copy `paths` (files, symlinks or directories inside the Debian tree `root`) into `out` with
    every shared library they load (`ldd`, run in `root`), symlinks kept and followed."""
    for name, target in MERGED.items():
        if (root / name).is_symlink() and not (out / name).is_symlink():
            (out / target).mkdir(parents=True, exist_ok=True)
            (out / name).symlink_to(target)
    pending = list(paths)
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        source = root / path.lstrip("/")
        if source.is_dir() and not source.is_symlink():
            pending += [f"{path}/{child.name}" for child in source.iterdir()]
            continue
        target = out / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            link = os.readlink(source)
            target.unlink(missing_ok=True)
            target.symlink_to(link)
            pending.append(os.path.normpath(os.path.join(os.path.dirname(path), link)))
            continue
        shutil.copy2(source, target)
        ldd = subprocess.run(["chroot", str(root), "ldd", path], capture_output=True, text=True)
        for line in ldd.stdout.splitlines():  # "not a dynamic executable" (a script, data) has none
            found = LIBRARY.search(line.strip())
            if found:
                pending.append(found.group(1))
    return out
