"""The Open Inference Protocol (KServe v2 / Triton) REST endpoints."""

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
