"""Where model weights come from, and loading them safely.

A model is named by a URI: a local path or `file://`, or an object in a store
(`s3://bucket/key`, `gs://bucket/key`, `https://host/path`). Each scheme has a
fetcher in `FETCHERS` that brings the file to local disk. Remote objects are
downloaded once per node into a cache shared by the replicas there (a file lock
serialises them; MNIST_SERVE_MODEL_CACHE moves it), and their sha256 is checked before
anything is loaded. Every remote read times out (MNIST_SERVE_FETCH_TIMEOUT_S, default 30 s).

Credentials come only from the environment, as each library reads it: boto3's
chain for S3 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, or EKS
IRSA / Pod Identity), Application Default Credentials for GCS (GKE Workload
Identity), the system CA bundle or SSL_CERT_FILE for HTTPS.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch

from mnist_serve.model import MNISTNet

METADATA_FILE = "metadata.json"
# Per-node download cache; replicas on one node share it.
CACHE_DIR = Path(os.environ.get("MNIST_SERVE_MODEL_CACHE") or f"{tempfile.gettempdir()}/mnist-serve-models")
# Seconds to connect and between bytes read, for every remote fetcher.
TIMEOUT_S = float(os.environ.get("MNIST_SERVE_FETCH_TIMEOUT_S", "30"))


class WeightsError(RuntimeError):
    """The weights cannot be found, fetched or trusted."""


def _fetch_file(uri: str) -> Path:
    parsed = urlparse(uri)
    path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f"model weights not found at {path} (from uri {uri!r})")
    return path


def _bucket_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc or not parsed.path.strip("/"):
        raise WeightsError(
            f"model uri {uri!r} must name a bucket and an object: {parsed.scheme}://bucket/key"
        )
    return parsed.netloc, parsed.path.lstrip("/")


def _download_s3(uri: str, dest: Path) -> None:
    import boto3
    import botocore.config
    import botocore.exceptions

    bucket, key = _bucket_key(uri)
    config = botocore.config.Config(
        connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 3, "mode": "standard"}
    )
    try:
        # A new session reads the environment now (boto3's default session keeps what it found first).
        boto3.session.Session().client("s3", config=config).download_file(bucket, key, str(dest))
    except botocore.exceptions.NoCredentialsError as exc:
        raise WeightsError(
            f"no AWS credentials to read {uri}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or use IRSA / EKS Pod Identity"
        ) from exc
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise WeightsError(f"model weights not found at {uri}") from exc
        raise WeightsError(f"cannot read {uri}: {exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise WeightsError(f"cannot read {uri}: {exc}") from exc


def _download_gs(uri: str, dest: Path) -> None:
    import google.auth.exceptions
    from google.api_core import exceptions
    from google.cloud import storage

    bucket, key = _bucket_key(uri)
    try:
        # STORAGE_EMULATOR_HOST points it at a local server; otherwise Application Default Credentials.
        client = storage.Client()
        client.bucket(bucket).blob(key).download_to_filename(str(dest), timeout=TIMEOUT_S)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise WeightsError(
            f"no Google credentials to read {uri}: "
            "use GKE Workload Identity or GOOGLE_APPLICATION_CREDENTIALS"
        ) from exc
    except exceptions.NotFound as exc:
        raise WeightsError(f"model weights not found at {uri}") from exc
    except exceptions.GoogleAPIError as exc:
        raise WeightsError(f"cannot read {uri}: {exc}") from exc


def _download_https(uri: str, dest: Path) -> None:
    # The default context verifies against the system CAs, or SSL_CERT_FILE when set.
    try:
        with urllib.request.urlopen(uri, timeout=TIMEOUT_S, context=ssl.create_default_context()) as r:
            with dest.open("wb") as f:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    f.write(chunk)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise WeightsError(f"model weights not found at {uri}") from exc
        raise WeightsError(f"cannot read {uri}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(f"cannot read {uri}: {exc}") from exc


def _cached(download: Callable[[str, Path], None]) -> Callable[[str, str | None], Path]:
    """A fetcher that downloads into the node's cache, once per URI and pinned sha256.

    A pinned object is reused by every replica of the node (a missing object is still reported,
    since the entry is per URI); an unpinned one may change under the same URI, so it is
    downloaded on every load.
    """

    def fetch(uri: str, expected_sha256: str | None) -> Path:
        name = f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{expected_sha256 or 'unpinned'}"
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        path = CACHE_DIR / f"{name}.pt"
        with (CACHE_DIR / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if expected_sha256 and path.is_file() and sha256(path) == expected_sha256:
                return path
            partial = path.with_suffix(".part")
            try:
                download(uri, partial)
                # Checked before it enters the cache, so a bad object is never reused.
                if expected_sha256 and (actual := sha256(partial)) != expected_sha256:
                    raise WeightsError(
                        f"sha256 of {uri} is {actual}, but the serve config expects {expected_sha256}"
                    )
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
        return path

    return fetch


FETCHERS: dict[str, Callable[[str, str | None], Path]] = {
    "": lambda uri, _: _fetch_file(uri),
    "file": lambda uri, _: _fetch_file(uri),
    "s3": _cached(_download_s3),
    "gs": _cached(_download_gs),
    "https": _cached(_download_https),
}


def fetch(uri: str, expected_sha256: str | None = None) -> Path:
    """Bring the weights named by `uri` to local disk and return their path."""
    scheme = urlparse(uri).scheme
    fetcher = FETCHERS.get(scheme)
    if fetcher is None:
        supported = ", ".join(sorted(s or "<local path>" for s in FETCHERS))
        raise WeightsError(f"unsupported model uri scheme {scheme!r}; supported: {supported}")
    return fetcher(uri, expected_sha256)


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
    metadata file beside a local file when there is one.
    """
    path = fetch(uri, expected_sha256)
    actual = sha256(path)
    local = urlparse(uri).scheme in ("", "file")
    metadata = (read_metadata(path) if local else None) or {}
    for source, expected in (
        ("the serve config", expected_sha256),
        (METADATA_FILE, metadata.get("weights_sha256")),
    ):
        if expected and expected != actual:
            raise WeightsError(f"sha256 of {uri} is {actual}, but {source} expects {expected}")
    model = MNISTNet()
    # weights_only: never unpickle arbitrary objects from a weights file.
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
