"""NVIDIA's Triton clients, with their defaults, against the Open Inference Protocol endpoints.

tritonclient.http sends binary tensor data and no content type unless told otherwise;
tritonclient.grpc sends raw_input_contents. Both must classify real test digits at >= 99%
and get clear OIP errors back for the mistakes users make.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from mnist_serve.signature import CLASSES, INPUT, MODEL_NAME, OUTPUT_NAMES, PIXELS, SIDE

# The whole test set (the model scores 99.2% on it; its first 2,000 digits are harder, 98.85%),
# in requests of 250 digits (the service's default limit is 256 per request).
BATCH = 250
CLIENTS = {"http": httpclient, "grpc": grpcclient}


@pytest.fixture(scope="module")
def clients(cluster):
    http = httpclient.InferenceServerClient(cluster.serve_url.removeprefix("http://"))
    grpc = grpcclient.InferenceServerClient(cluster.grpc_url)
    yield {"http": http, "grpc": grpc}
    http.close()
    grpc.close()


def tensor(module, images: np.ndarray, datatype: str, shape: str, binary: bool | None = None):
    """Images as the model's input, [N, 1, 28, 28] or [N, 784], FP32 in [0, 1] or UINT8."""
    array = images.reshape(len(images), *((1, SIDE, SIDE) if shape == "image" else (PIXELS,)))
    array = (array / 255.0).astype(np.float32) if datatype == "FP32" else array.astype(np.uint8)
    tensor = module.InferInput(INPUT.name, list(array.shape), datatype)
    if binary is None:  # the client's default
        tensor.set_data_from_numpy(array)
    else:
        tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def accuracy(protocol: str, client, mnist_test, datatype="UINT8", shape="flat", binary=None) -> str:
    """Classify the whole test set through `client`; assert >= 99% and say how it went."""
    module, labels = CLIENTS[protocol], []
    started = time.perf_counter()
    for start in range(0, len(mnist_test.labels), BATCH):
        images = mnist_test.images[start : start + BATCH]
        result = client.infer(MODEL_NAME, [tensor(module, images, datatype, shape, binary)])
        label = result.as_numpy("label")
        assert label.shape == (len(images),) and label.dtype == np.int64
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(images), CLASSES) and probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
        labels.append(label)
    seconds = time.perf_counter() - started
    correct = float((np.concatenate(labels) == mnist_test.labels).mean())
    encoding = "json" if binary is False else "binary" if protocol == "http" else "raw"
    assert correct >= 0.99, f"tritonclient.{protocol} {encoding} {datatype} {shape}: {correct:.2%}"
    return (
        f"tritonclient.{protocol} {encoding} {datatype} {shape}: {correct:.2%} of {len(mnist_test.labels)} "
        f"test digits ({len(mnist_test.labels) / seconds:.0f} img/s, one client, {BATCH} per request)"
    )


@pytest.mark.parametrize("shape", ["image", "flat"])
@pytest.mark.parametrize("datatype", ["FP32", "UINT8"])
@pytest.mark.parametrize(
    ("protocol", "binary"),
    [("http", None), ("http", False), ("grpc", None)],
    ids=["http-binary", "http-json", "grpc"],
)
def test_accuracy_with_client_defaults(clients, mnist_test, report, protocol, binary, datatype, shape):
    report(accuracy(protocol, clients[protocol], mnist_test, datatype, shape, binary))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_requested_outputs_id_parameters_and_version(clients, mnist_test, protocol):
    module, client = CLIENTS[protocol], clients[protocol]
    images = mnist_test.images[:8]
    result = client.infer(
        MODEL_NAME,
        [tensor(module, images, "UINT8", "flat")],
        model_version="1",
        outputs=[module.InferRequestedOutput("logits"), module.InferRequestedOutput("label")],
        request_id="req-7",
        parameters={"trace": "abc", "priority_hint": 3},
    )
    response = result.get_response(as_json=True) if protocol == "grpc" else result.get_response()
    assert response["id"] == "req-7" and response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == ["logits", "label"]
    parameters = response["parameters"]
    if protocol == "grpc":  # InferParameter messages as JSON
        parameters = {k: next(iter(v.values())) for k, v in parameters.items()}
    assert parameters == {"trace": "abc", "priority_hint": 3 if protocol == "http" else "3"}
    assert result.as_numpy("label").tolist() == mnist_test.labels[:8].tolist()
    assert result.as_numpy("logits").shape == (8, CLASSES)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_health_and_metadata(clients, protocol):
    client = clients[protocol]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL_NAME) and client.is_model_ready(MODEL_NAME, "1")
    assert not client.is_model_ready("resnet")
    metadata = client.get_model_metadata(MODEL_NAME, as_json=True) if protocol == "grpc" else None
    metadata = metadata or client.get_model_metadata(MODEL_NAME)
    assert metadata["name"] == MODEL_NAME and metadata["versions"] == ["1"]
    assert [i["name"] for i in metadata["inputs"]] == [INPUT.name]
    assert [int(d) for d in metadata["inputs"][0]["shape"]] == list(INPUT.shape)
    assert tuple(o["name"] for o in metadata["outputs"]) == OUTPUT_NAMES
    server = client.get_server_metadata(as_json=True) if protocol == "grpc" else client.get_server_metadata()
    assert server["name"] == "mnist-serve" and "binary_tensor_data" in server["extensions"]
    assert "model_configuration" in server["extensions"]


def test_model_configuration(clients, cluster, app_config):
    """Triton's model configuration extension, which perf_analyzer reads before it sends anything:
    the limits and the ingress's batching as the serve config sets them, dims without the batch.
    Over gRPC, the same configuration as Triton's own message (tritonclient's model_config.proto)."""
    (app,) = app_config(cluster.ports)["applications"]
    batching = next(d for d in app["deployments"] if d["name"] == "Ingress")["user_config"]
    expected = {
        "name": MODEL_NAME,
        "platform": "pytorch",
        # Images per request (the serve config's limit: 256).
        "max_batch_size": app["args"]["limits"]["max_images"],
        "input": [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, SIDE, SIDE]}],
        "output": [
            {"name": "label", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}},
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [CLASSES]},
            {"name": "logits", "data_type": "TYPE_FP32", "dims": [CLASSES]},
        ],
        "dynamic_batching": {
            "preferred_batch_size": [batching["max_batch_size"]],
            "max_queue_delay_microseconds": round(batching["batch_wait_timeout_s"] * 1_000_000),
        },
    }
    assert expected["max_batch_size"] == 256
    as_triton = json_format.ParseDict(expected, model_config_pb2.ModelConfig())
    for version in ("", "1"):
        assert clients["http"].get_model_config(MODEL_NAME, version) == expected
        assert clients["grpc"].get_model_config(MODEL_NAME, version).config == as_triton
    for protocol in ("http", "grpc"):
        with pytest.raises(InferenceServerException) as unknown:
            clients[protocol].get_model_config(MODEL_NAME, "7")
        assert "has no version '7'" in str(unknown.value)


def bad_input(module, name=INPUT.name, shape=(1, PIXELS), datatype="UINT8"):
    dtypes = {"UINT8": np.uint8, "FP32": np.float32, "INT32": np.int32, "FP64": np.float64}
    tensor = module.InferInput(name, list(shape), datatype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype=dtypes[datatype]))
    return tensor


# (case, model, input arguments, HTTP status, gRPC code, text the error must contain)
ERRORS = [
    ("unknown model", "resnet", {}, "404", "StatusCode.NOT_FOUND", "unknown model 'resnet'"),
    (
        "wrong input name",
        MODEL_NAME,
        {"name": "input__0"},
        "400",
        "StatusCode.INVALID_ARGUMENT",
        "'input__0'",
    ),
    (
        "wrong shape",
        MODEL_NAME,
        {"shape": (1, SIDE, SIDE)},
        "400",
        "StatusCode.INVALID_ARGUMENT",
        "[1, 28, 28]",
    ),
    ("wrong datatype", MODEL_NAME, {"datatype": "INT32"}, "400", "StatusCode.INVALID_ARGUMENT", "INT32"),
    ("FP64", MODEL_NAME, {"datatype": "FP64"}, "400", "StatusCode.INVALID_ARGUMENT", "FP64"),
    ("shape [0, 784]", MODEL_NAME, {"shape": (0, PIXELS)}, "400", "StatusCode.INVALID_ARGUMENT", "no images"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(
    ("model", "arguments", "status", "code", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_client_errors(clients, protocol, model, arguments, status, code, message):
    module, client = CLIENTS[protocol], clients[protocol]
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [bad_input(module, **arguments)])
    assert caught.value.status() == (status if protocol == "http" else code)
    assert message in caught.value.message()
    if protocol == "http" and arguments.get("datatype") == "INT32":
        assert "FP32" in caught.value.message()  # says what to send instead


def test_unknown_version_is_an_oip_404(clients):
    with pytest.raises(InferenceServerException) as caught:
        clients["http"].get_model_metadata(MODEL_NAME, "2")
    assert caught.value.status() == "404" and "no version '2'" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        clients["grpc"].get_model_metadata(MODEL_NAME, "2")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
