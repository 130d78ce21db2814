"""Open Inference Protocol pieces shared by its REST and gRPC modules: metadata, Triton's model
configuration, model and version checks, requested outputs, output tensors. All derived from
`signature` and the serving config."""

from __future__ import annotations

import numpy as np

from mnist_serve import __version__
from mnist_serve.config import Batching, Limits
from mnist_serve.decoding import InputError
from mnist_serve.deployments import Prediction
from mnist_serve.signature import INPUT, MODEL_NAME, OUTPUT_NAMES, OUTPUTS, Tensor

SERVER_NAME = "mnist-serve"
# Triton's names for its extensions served here: binary tensor data (the REST module) and the
# model configuration (REST and gRPC), which perf_analyzer reads before any inference.
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
PLATFORM = "pytorch"
# Triton's parameters that choose the wire encoding; they are not echoed back.
ENCODING_PARAMETERS = {"binary_data", "binary_data_size", "binary_data_output"}
_NUMPY = {"INT64": np.dtype("<i8"), "FP32": np.dtype("<f4")}


def server_metadata() -> dict:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def model_metadata(model_version: str) -> dict:
    return {
        "name": MODEL_NAME,
        "versions": [model_version],
        "platform": PLATFORM,
        "inputs": [INPUT.as_metadata()],
        "outputs": [t.as_metadata() for t in OUTPUTS],
    }


def model_config(limits: Limits, batching: Batching) -> dict:
    """Triton's model configuration (model_config.proto, as JSON) of what is served: a request
    holds up to `max_images` images, and the ingress gathers concurrent requests into groups of up
    to `max_batch_size` images, waiting at most `batch_wait_timeout_s` (Triton's dynamic batching).
    """
    return {
        "name": MODEL_NAME,
        "platform": PLATFORM,
        "max_batch_size": limits.max_images,
        "input": [_config_tensor(INPUT)],
        "output": [_config_tensor(t) for t in OUTPUTS],
        "dynamic_batching": {
            "preferred_batch_size": [batching.max_batch_size],
            "max_queue_delay_microseconds": round(batching.batch_wait_timeout_s * 1e6),
        },
    }


def _config_tensor(tensor: Tensor) -> dict:
    """A tensor as Triton configures it: dims without the batch dimension, and one value per
    image as dims [1] reshaped to none (Triton's way to declare a batch of scalars)."""
    dims = list(tensor.shape[1:])
    config = {"name": tensor.name, "data_type": f"TYPE_{tensor.datatype}", "dims": dims or [1]}
    if not dims:
        config["reshape"] = {"shape": []}
    return config


def check_model(name: str) -> None:
    if name != MODEL_NAME:
        raise InputError(f"unknown model {name!r}; this server serves {MODEL_NAME!r}", 404)


def check_version(requested: str, served: str) -> None:
    """An empty version means the served one (as Triton's clients send it)."""
    if requested and requested != served:
        raise InputError(f"model {MODEL_NAME!r} has no version {requested!r}; it serves {served!r}", 404)


def requested_outputs(names: list[str] | None) -> list[str]:
    """Every output when none is named, as the spec says."""
    if not names:
        return list(OUTPUT_NAMES)
    unknown = sorted(set(names) - set(OUTPUT_NAMES))
    if unknown:
        raise InputError(f"unknown outputs {unknown}; the model has {list(OUTPUT_NAMES)}", 400)
    return names


def output_tensors(prediction: Prediction, names: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(name, datatype, little-endian array) for each requested output, in the order asked."""
    log_probs = prediction.log_probs
    values = {"label": log_probs.argmax(1), "probabilities": np.exp(log_probs), "logits": log_probs}
    datatypes = {t.name: t.datatype for t in OUTPUTS}
    return [(n, datatypes[n], values[n].astype(_NUMPY[datatypes[n]], copy=False)) for n in names]


def echo(parameters: dict | None) -> dict | None:
    """The request's own parameters, returned in the response (minus the encoding choices)."""
    kept = {k: v for k, v in (parameters or {}).items() if k not in ENCODING_PARAMETERS}
    return kept or None
