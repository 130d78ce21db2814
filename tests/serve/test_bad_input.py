"""Bad input gets a 4xx naming the problem: never a 500, a hang or a crashed replica.

The table is the specification: (name, method, path, body, content type,
expected status, text the error must contain).
"""

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from mnist_serve import client

JSON = "application/json"
RAW = "application/octet-stream"
PNG = "image/png"
ZEROS = [[0] * 28] * 28
INFER = "/v2/models/mnist/infer"


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, "JPEG")
    return buffer.getvalue()


def oip(**tensor) -> str:
    base = {"name": "image", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}
    return json.dumps({"inputs": [{**base, **tensor}]})


CASES = [
    # /predict, JSON
    ("malformed JSON", "POST", "/predict", '{"image": [', JSON, 422, "Invalid JSON"),
    ("JSON array, not object", "POST", "/predict", "[1, 2]", JSON, 422, "Input should be an object"),
    ("missing image", "POST", "/predict", "{}", JSON, 422, "Field required"),
    ("unknown field", "POST", "/predict", json.dumps({"image": ZEROS, "x": 1}), JSON, 422, "Extra inputs"),
    ("image is a string", "POST", "/predict", '{"image": "abc"}', JSON, 422, "should be a valid array"),
    ("27 rows", "POST", "/predict", json.dumps({"image": ZEROS[:27]}), JSON, 422, "shape [27, 28]"),
    (
        "3 channels",
        "POST",
        "/predict",
        json.dumps({"image": [[ZEROS] * 3]}),
        JSON,
        422,
        "shape [1, 3, 28, 28]",
    ),
    (
        "ragged rows",
        "POST",
        "/predict",
        json.dumps({"image": ZEROS[:27] + [[0] * 5]}),
        JSON,
        422,
        "rectangular",
    ),
    (
        "strings as pixels",
        "POST",
        "/predict",
        json.dumps({"image": [["a"] * 28] * 28}),
        JSON,
        422,
        "only numbers",
    ),
    (
        "booleans as pixels",
        "POST",
        "/predict",
        json.dumps({"image": [[True] * 28] * 28}),
        JSON,
        422,
        "only numbers",
    ),
    # Python's json.dumps writes the NaN and Infinity literals many clients send.
    (
        "NaN",
        "POST",
        "/predict",
        json.dumps({"image": [[float("nan")] * 28] * 28}),
        JSON,
        422,
        "NaN or infinite",
    ),
    (
        "Infinity",
        "POST",
        "/predict",
        json.dumps({"image": [[float("inf")] * 28] * 28}),
        JSON,
        422,
        "NaN or infinite",
    ),
    (
        "float above 1",
        "POST",
        "/predict",
        json.dumps({"image": [[1.5] * 28] * 28}),
        JSON,
        422,
        "holds 1.5: pixel values must be integers 0–255",
    ),
    (
        "negative float",
        "POST",
        "/predict",
        json.dumps({"image": [[-0.5] * 28] * 28}),
        JSON,
        422,
        "outside [0, 1]",
    ),
    (
        "integer above 255",
        "POST",
        "/predict",
        json.dumps({"image": [[256] * 28] * 28}),
        JSON,
        422,
        "outside 0–255",
    ),
    (
        "negative integer",
        "POST",
        "/predict",
        json.dumps({"image": [[-1] * 28] * 27 + [[200] * 28]}),
        JSON,
        422,
        "outside 0–255",
    ),
    ("empty batch", "POST", "/predict", '{"image": []}', JSON, 422, "at least 1 item"),
    ("257 images", "POST", "/predict", json.dumps({"image": [ZEROS] * 257}), JSON, 413, "at most 256"),
    # /predict, raw bytes and PNG
    ("raw: 785 bytes", "POST", "/predict", b"\0" * 785, RAW, 422, "multiple of 784"),
    ("raw: empty", "POST", "/predict", b"", RAW, 422, "no images"),
    ("raw: 257 images", "POST", "/predict", b"\0" * 784 * 257, RAW, 413, "at most 256"),
    ("body over 8 MiB", "POST", "/predict", b"\0" * (9 << 20), RAW, 413, "exceeds 8388608 bytes"),
    ("PNG: garbage", "POST", "/predict", b"garbage", PNG, 400, "not a readable PNG"),
    ("PNG: truncated", "POST", "/predict", png(28, 28)[:50], PNG, 400, "not a readable PNG"),
    ("PNG: JPEG inside", "POST", "/predict", jpeg(), PNG, 400, "not a readable PNG"),
    ("PNG: 5000×5000", "POST", "/predict", png(5000, 5000), PNG, 413, "pixels are allowed"),
    ("text/plain", "POST", "/predict", "hello", "text/plain", 415, "unsupported content type 'text/plain'"),
    (
        "form-encoded (curl -d)",
        "POST",
        "/predict",
        "a=1",
        "application/x-www-form-urlencoded",
        415,
        "unsupported content type",
    ),
    ("GET /predict", "GET", "/predict", None, None, 405, "Method Not Allowed"),
    # The tutorial's POST /
    ("/: malformed JSON", "POST", "/", "{", JSON, 400, "invalid JSON"),
    ("/: string holding non-JSON", "POST", "/", '"{nope"', JSON, 400, "invalid JSON"),
    ("/: no image key", "POST", "/", json.dumps(json.dumps({"img": []})), JSON, 422, "must be a JSON object"),
    ("/: NaN literal", "POST", "/", '{"image": NaN}', JSON, 400, "NaN is not a JSON number"),
    # Open Inference Protocol
    ("OIP: INT32", "POST", INFER, oip(datatype="INT32"), JSON, 400, "inputs.0.datatype"),
    ("OIP: shape [1, 28, 28]", "POST", INFER, oip(shape=[1, 28, 28]), JSON, 400, "not supported"),
    ("OIP: too little data", "POST", INFER, oip(data=[0] * 700), JSON, 400, "needs 784"),
    ("OIP: wrong input name", "POST", INFER, oip(name="input__0"), JSON, 400, "unknown input 'input__0'"),
    ("OIP: fractional UINT8", "POST", INFER, oip(data=[0.5] * 784), JSON, 400, "must be integers"),
    ("OIP: FP32 above 1", "POST", INFER, oip(datatype="FP32", data=[2.0] * 784), JSON, 400, "outside [0, 1]"),
    (
        "OIP: two inputs",
        "POST",
        INFER,
        json.dumps({"inputs": [json.loads(oip())["inputs"][0]] * 2}),
        JSON,
        400,
        "at most 1 item",
    ),
    (
        "OIP: unknown output",
        "POST",
        INFER,
        json.dumps({**json.loads(oip()), "outputs": [{"name": "x"}]}),
        JSON,
        400,
        "unknown outputs ['x']",
    ),
    ("OIP: unknown model", "POST", "/v2/models/resnet/infer", oip(), JSON, 404, "unknown model 'resnet'"),
    ("OIP: unknown model metadata", "GET", "/v2/models/resnet", None, None, 404, "unknown model"),
]


@pytest.fixture(scope="module")
def replicas_before(cluster):
    return cluster.replicas()


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_refused(base_url, replicas_before, method, path, body, content_type, status, message):
    headers = {"content-type": content_type} if content_type else {}
    reply = requests.request(method, base_url + path, data=body, headers=headers, timeout=30)
    assert reply.status_code == status, reply.text
    assert message in reply.text


def test_the_table_is_large_enough():
    assert len(CASES) >= 25


def test_service_still_answers_correctly_with_the_same_replicas(cluster, replicas_before, mnist_test):
    images = mnist_test.images[:200]
    request = client.encode("raw", images)
    reply = requests.post(cluster.serve_url + request.path, data=request.body, headers=request.headers)
    assert reply.status_code == 200
    assert (np.array(reply.json()["labels"]) == mnist_test.labels[:200]).mean() >= 0.98
    assert cluster.replicas() == replicas_before
