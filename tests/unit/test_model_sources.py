"""Model URIs from object stores, against real servers started here: moto's S3 API server and an
HTTPS server with a CA made for the test. Each source checks the sha256 pin before loading,
downloads once per node (a shared cache), and fails with a message that names the problem."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusterkit.localray import WEIGHTS
from mnist_serve import weights
from mnist_serve.weights import WeightsError, load_model, sha256

PIN = sha256(WEIGHTS)
BUCKET = "models"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh per-node cache for every test."""
    monkeypatch.setattr(weights, "CACHE_DIR", tmp_path / "cache")
    return tmp_path / "cache"


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server's environment, as a pod would have it; the weights uploaded as v1/mnist_cnn.pt."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(WEIGHTS), BUCKET, "v1/mnist_cnn.pt")
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, ca: bool, san=None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """A plain HTTPS file server on loopback whose certificate a test CA signed; (url, ca.pem)."""
    root = tmp_path_factory.mktemp("https")
    (root / "files" / "v1").mkdir(parents=True)
    (root / "files" / "v1" / "mnist_cnn.pt").write_bytes(WEIGHTS.read_bytes())
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(
        _name("mnist-serve test CA"), _name("mnist-serve test CA"), ca_key.public_key(), ca_key, True
    )

    cert = _certificate(
        _name("127.0.0.1"),
        ca.subject,
        key.public_key(),
        ca_key,
        False,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (root / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root / "files"))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(root / "server.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", root / "ca.pem"
    server.shutdown()


def same_weights(model) -> bool:
    expected = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    return all(torch.equal(expected[k], v) for k, v in model.state_dict().items())


def test_s3_model_is_loaded_checked_and_cached_per_node(s3, cache):
    uri = f"s3://{BUCKET}/v1/mnist_cnn.pt"
    assert same_weights(load_model(uri, PIN))
    assert [p.name.endswith(f"-{PIN}.pt") for p in cache.glob("*.pt")] == [True]
    # The next replica on this node loads from the cache: even with the object gone.
    s3.delete_object(Bucket=BUCKET, Key="v1/mnist_cnn.pt")
    assert same_weights(load_model(uri, PIN))


def test_an_unpinned_s3_model_is_fetched_again(s3):
    uri = f"s3://{BUCKET}/v1/mnist_cnn.pt"
    assert same_weights(load_model(uri))
    s3.delete_object(Bucket=BUCKET, Key="v1/mnist_cnn.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_model(uri)


def test_https_model_is_verified_against_the_ca_in_ssl_cert_file(https_server, monkeypatch):
    url, ca = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    assert same_weights(load_model(f"{url}/v1/mnist_cnn.pt", PIN))


S3_FAILURES = [
    ("missing object", "s3://models/v2/mnist_cnn.pt", PIN, {}, "model weights not found at s3://models/v2"),
    ("missing bucket", "s3://nobucket/v1/mnist_cnn.pt", PIN, {}, "model weights not found at s3://nobucket"),
    ("checksum mismatch", "s3://models/v1/mnist_cnn.pt", "0" * 64, {}, "but the serve config expects 0000"),
    ("no key in the uri", "s3://models", PIN, {}, "must name a bucket and an object"),
    (
        "no credentials",
        "s3://models/v1/mnist_cnn.pt",
        PIN,
        {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
        "no AWS credentials to read s3://models/v1/mnist_cnn.pt",
    ),
    ("unknown scheme", "ftp://host/m.pt", PIN, {}, "unsupported model uri scheme 'ftp'"),
]


@pytest.mark.parametrize(
    ("uri", "pin", "env", "message"), [c[1:] for c in S3_FAILURES], ids=[c[0] for c in S3_FAILURES]
)
def test_s3_failures_are_named(s3, monkeypatch, tmp_path, cache, uri, pin, env, message):
    # Nothing but the environment may supply credentials: no shared files, no instance metadata.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in env.items():
        monkeypatch.delenv(name) if value is None else monkeypatch.setenv(name, value)
    with pytest.raises(WeightsError, match=message):
        load_model(uri, pin)
    # Nothing unverified is left in the cache for the next replica.
    assert list(cache.glob("*.pt")) == []


def test_https_failures_are_named(https_server, monkeypatch, cache):
    url, ca = https_server
    with pytest.raises(WeightsError, match="CERTIFICATE_VERIFY_FAILED"):
        load_model(f"{url}/v1/mnist_cnn.pt", PIN)  # the system CAs do not know the test CA
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with pytest.raises(WeightsError, match="not found at https://"):
        load_model(f"{url}/v2/mnist_cnn.pt", PIN)
    assert list(cache.glob("*.pt")) == []


def test_gs_without_credentials_is_named(monkeypatch, tmp_path, cache):
    """gs:// is tested only this far (no GCS server here): with no Application Default Credentials
    anywhere (no key file, no gcloud config, no metadata server), the deploy error says so."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    with pytest.raises(WeightsError, match="no Google credentials to read gs://models/v1/mnist_cnn.pt"):
        load_model("gs://models/v1/mnist_cnn.pt", PIN)
