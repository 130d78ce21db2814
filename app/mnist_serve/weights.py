"""Where model weights come from, and loading them safely.

A model is named by a URI. Only local files (a path or `file://`) are
supported today; another scheme (s3://, gs://, https://) is added by
registering a fetcher in `FETCHERS` that brings the file to local disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch

from mnist_serve.model import MNISTNet

METADATA_FILE = "metadata.json"


class WeightsError(RuntimeError):
    """The weights cannot be found, fetched or trusted."""


def _fetch_file(uri: str) -> Path:
    parsed = urlparse(uri)
    path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f"model weights not found at {path} (from uri {uri!r})")
    return path


FETCHERS: dict[str, Callable[[str], Path]] = {"": _fetch_file, "file": _fetch_file}


def fetch(uri: str) -> Path:
    """Bring the weights named by `uri` to local disk and return their path."""
    scheme = urlparse(uri).scheme
    fetcher = FETCHERS.get(scheme)
    if fetcher is None:
        supported = ", ".join(sorted(s or "<local path>" for s in FETCHERS))
        raise WeightsError(f"unsupported model uri scheme {scheme!r}; supported: {supported}")
    return fetcher(uri)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(weights: Path) -> dict | None:
    """The metadata written by training beside the weights, if any."""
    path = weights.parent / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_model(uri: str, expected_sha256: str | None = None) -> MNISTNet:
    """Load the weights named by `uri` into an MNISTNet in eval mode.

    The file's sha256 must match `expected_sha256` when given, and the
    metadata file beside it when there is one.
    """
    path = fetch(uri)
    actual = sha256(path)
    metadata = read_metadata(path) or {}
    for source, expected in (
        ("the serve config", expected_sha256),
        (METADATA_FILE, metadata.get("weights_sha256")),
    ):
        if expected and expected != actual:
            raise WeightsError(f"sha256 of {path} is {actual}, but {source} expects {expected}")
    model = MNISTNet()
    # weights_only: never unpickle arbitrary objects from a weights file.
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
