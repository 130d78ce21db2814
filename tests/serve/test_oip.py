"""The Open Inference Protocol (KServe v2 / Triton) REST endpoints."""

import json

import numpy as np
import pytest
import requests

from mnist_serve import client

INFER = "/v2/models/mnist/infer"


def test_health_endpoints(base_url):
    assert requests.get(f"{base_url}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{base_url}/v2/health/ready").json() == {"ready": True}
    assert requests.get(f"{base_url}/v2/models/mnist/ready").json() == {"ready": True}


def test_model_metadata(base_url):
    metadata = requests.get(f"{base_url}/v2/models/mnist").json()
    assert metadata["name"] == "mnist" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities", "logits"}


@pytest.mark.parametrize("fmt", ["oip-fp32", "oip-uint8"])
def test_infer_response_shape(base_url, mnist_test, fmt):
    images = mnist_test.images[:5]
    request = client.encode(fmt, images)
    reply = requests.post(base_url + request.path, data=request.body, headers=request.headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == "mnist" and body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["shape"] == [5] and outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [5, 10] and outputs["logits"]["datatype"] == "FP32"
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert outputs["label"]["data"] == mnist_test.labels[:5].tolist()


def test_requested_outputs_and_request_id(base_url, mnist_test):
    body = {
        "id": "req-42",
        "inputs": [
            {
                "name": "image",
                "shape": [1, 784],
                "datatype": "UINT8",
                "data": mnist_test.images[0].ravel().tolist(),
            }
        ],
        "outputs": [{"name": "label"}],
    }
    reply = requests.post(base_url + INFER, json=body).json()
    assert reply["id"] == "req-42"
    assert reply["outputs"] == [
        {"name": "label", "shape": [1], "datatype": "INT64", "data": [int(mnist_test.labels[0])]}
    ]


def test_server_metadata(base_url):
    reply = requests.get(f"{base_url}/v2")
    assert reply.status_code == 200
    assert reply.json()["name"] == "mnist-serve" and reply.json()["extensions"] == [
        "binary_tensor_data",
        "model_configuration",
    ]


def test_versioned_routes_serve_the_served_version_only(base_url, mnist_test):
    assert requests.get(f"{base_url}/v2/models/mnist/versions/1").json()["versions"] == ["1"]
    assert requests.get(f"{base_url}/v2/models/mnist/versions/1/ready").json() == {"ready": True}
    request = client.encode("oip-uint8", mnist_test.images[:3])
    reply = requests.post(f"{base_url}/v2/models/mnist/versions/1/infer", data=request.body)
    assert (
        reply.status_code == 200
        and client.labels("oip-uint8", reply.json()) == mnist_test.labels[:3].tolist()
    )
    for path in ("versions/2", "versions/2/ready", "versions/2/infer"):
        method = requests.post if path.endswith("infer") else requests.get
        reply = method(f"{base_url}/v2/models/mnist/{path}", data=request.body)
        assert reply.status_code == 404
        assert reply.json() == {"error": "model 'mnist' has no version '2'; it serves '1'"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v2/nothing", 404), ("GET", "/v2/models/mnist/infer", 405), ("POST", "/v2", 405)],
)
def test_every_error_under_v2_is_oip_shaped(base_url, method, path, status):
    reply = requests.request(method, base_url + path)
    assert reply.status_code == status
    assert list(reply.json()) == ["error"] and reply.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_json_inference_whatever_the_content_type(base_url, mnist_test, content_type):
    request = client.encode("oip-uint8", mnist_test.images[:2])
    headers = {"content-type": content_type} if content_type else {}
    reply = requests.post(base_url + request.path, data=request.body, headers=headers)
    assert reply.status_code == 200, reply.text
    assert client.labels("oip-uint8", reply.json()) == mnist_test.labels[:2].tolist()


def test_binary_tensor_data_in_and_out(base_url, mnist_test):
    """Triton's extension by hand: JSON header + raw bytes in; the requested binary outputs out."""
    images = mnist_test.images[:4]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [4, 1, 28, 28],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4 * 784 * 4},
                }
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
        }
    ).encode()
    body = header + (images / 255.0).astype("<f4").tobytes()
    reply = requests.post(
        base_url + INFER, data=body, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert reply.status_code == 200, reply.text
    length = int(reply.headers["Inference-Header-Content-Length"])
    meta = json.loads(reply.content[:length])
    label, probabilities = meta["outputs"]
    assert label["parameters"] == {"binary_data_size": 4 * 8} and "data" not in label
    assert np.frombuffer(reply.content[length:], "<i8").tolist() == mnist_test.labels[:4].tolist()
    assert len(probabilities["data"]) == 40


@pytest.mark.parametrize(
    ("header_length", "size", "message"),
    [("abc", 784, "not a length"), ("100000", 784, "not a length"), (None, 700, "does not match")],
)
def test_bad_binary_framing(base_url, header_length, size, message):
    tensor = {
        "name": "image",
        "shape": [1, 784],
        "datatype": "UINT8",
        "parameters": {"binary_data_size": size},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    length = str(len(header)) if header_length is None else header_length
    reply = requests.post(
        base_url + INFER, data=header + b"\0" * 784, headers={"Inference-Header-Content-Length": length}
    )
    assert reply.status_code == 400 and message in reply.json()["error"]
