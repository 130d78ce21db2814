"""The Open Inference Protocol over REST (KServe v2 / Triton), as Triton's clients speak it.

- Inference bodies are JSON whatever their content type (tritonclient sends none).
- Triton's binary tensor data extension: the JSON header is the first
  `Inference-Header-Content-Length` bytes of the body and each input with a
  `binary_data_size` parameter takes that many raw little-endian bytes after it, in
  order; outputs asked with `binary_data` (or all, with the request's
  `binary_data_output`) come back the same way.
- Every error under /v2 is `{"error": "..."}` (the API module's handlers).
"""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from mnist_serve import decoding
from mnist_serve.decoding import InputError
from mnist_serve.protocol import oip
from mnist_serve.protocol.dataplane import DataPlane, dataplane, tag
from mnist_serve.signature import INPUT, INPUT_DATATYPES, INPUT_IMAGE_SHAPES, OUTPUT_NAMES

HEADER_LENGTH = "inference-header-content-length"
Parameters = dict[str, bool | int | str]


class Error(BaseModel):
    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Reshape(BaseModel):
    shape: list[int]


class TensorConfig(BaseModel):
    name: str
    data_type: str
    dims: list[int]
    reshape: Reshape | None = None


class DynamicBatching(BaseModel):
    preferred_batch_size: list[int]
    max_queue_delay_microseconds: int


class ModelConfig(BaseModel):
    """Triton's model configuration extension (its model_config.proto as JSON)."""

    name: str
    platform: str
    max_batch_size: int
    input: list[TensorConfig]
    output: list[TensorConfig]
    dynamic_batching: DynamicBatching


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class InferInput(BaseModel):
    name: str = Field(description=f"{INPUT.name!r}, the model's input.")
    shape: list[int] = Field(
        description="[N, " + "] or [N, ".join(", ".join(map(str, s)) for s in INPUT_IMAGE_SHAPES) + "]."
    )
    datatype: Literal[INPUT_DATATYPES] = Field(description="FP32 in [0, 1] or UINT8 0–255.")
    data: list | None = Field(
        default=None, description="Row-major contents, flat or nested; absent when sent as binary data."
    )
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size`: its bytes follow the JSON header."
    )


class RequestedOutput(BaseModel):
    name: str = Field(description=f"One of {list(OUTPUT_NAMES)}.")
    parameters: Parameters | None = Field(default=None, description="`binary_data`: return it as bytes.")


class InferRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = Field(
        default=None,
        description="Returned in the response; `binary_data_output` returns all outputs as bytes.",
    )
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list | None = None
    parameters: Parameters | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[InferOutput]


_NOT_READY = {503: {"model": Ready}}
_ERRORS = {400: {"model": Error}, 404: {"model": Error}, 413: {"model": Error}, 503: {"model": Error}}
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"], responses={404: {"model": Error}})


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> dict:
    return oip.server_metadata()


@router.get("/health/live", response_model=Live)
async def live() -> Live:
    return Live(live=True)


@router.get("/health/ready", response_model=Ready, responses=_NOT_READY)
async def ready(request: Request) -> JSONResponse:
    ok = await dataplane(request).ready()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


async def _served(plane: DataPlane, model_name: str, model_version: str) -> str:
    oip.check_model(model_name)
    served = await plane.model_version()
    oip.check_version(model_version, served)
    return served


@router.get("/models/{model_name}", response_model=ModelMetadata)
async def model_metadata(request: Request, model_name: str) -> dict:
    return oip.model_metadata(await _served(dataplane(request), model_name, ""))


@router.get("/models/{model_name}/versions/{model_version}", response_model=ModelMetadata)
async def version_metadata(request: Request, model_name: str, model_version: str) -> dict:
    return oip.model_metadata(await _served(dataplane(request), model_name, model_version))


_CONFIG = {"response_model": ModelConfig, "response_model_exclude_none": True}


@router.get("/models/{model_name}/config", **_CONFIG)
async def model_config(request: Request, model_name: str) -> dict:
    return await version_config(request, model_name, "")


@router.get("/models/{model_name}/versions/{model_version}/config", **_CONFIG)
async def version_config(request: Request, model_name: str, model_version: str) -> dict:
    plane = dataplane(request)
    await _served(plane, model_name, model_version)
    return oip.model_config(plane.limits, plane.batching)


@router.get("/models/{model_name}/ready", response_model=Ready, responses=_NOT_READY)
async def model_ready(request: Request, model_name: str) -> JSONResponse:
    oip.check_model(model_name)
    return await ready(request)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=Ready,
    responses={503: {"model": Ready}},
)
async def version_ready(request: Request, model_name: str, model_version: str) -> JSONResponse:
    await _served(dataplane(request), model_name, model_version)
    return await ready(request)


# Outputs asked for as binary data come back as Triton's binary tensor data (`_infer`).
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_BINARY_REPLY = {200: {"content": _BINARY}}
_INFER = {"response_model": InferResponse, "responses": _ERRORS | _BINARY_REPLY}


@router.post("/models/{model_name}/infer", **_INFER)
async def infer(request: Request, model_name: str) -> Response:
    """One input tensor `image` (FP32 in [0, 1] or UINT8), JSON or Triton binary tensor data."""
    oip.check_model(model_name)
    return await _infer(request, dataplane(request))


@router.post("/models/{model_name}/versions/{model_version}/infer", **_INFER)
async def version_infer(request: Request, model_name: str, model_version: str) -> Response:
    """`infer` for the served version; 404 for any other."""
    plane = dataplane(request)
    await _served(plane, model_name, model_version)
    return await _infer(request, plane)


async def _infer(request: Request, plane: DataPlane) -> Response:
    body = await request.body()
    header, binary = _split(body, request.headers.get(HEADER_LENGTH))
    try:
        payload = InferRequest.model_validate_json(header)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    tensor = payload.inputs[0]
    size = (tensor.parameters or {}).get("binary_data_size")
    limits = plane.limits
    if size is not None:
        if type(size) is not int or size != len(binary):
            raise InputError(
                f"binary_data_size {size!r} does not match the {len(binary)} bytes after the header", 400
            )
        pixels = decoding.oip_tensor(tensor.name, tensor.datatype, tensor.shape, limits, raw=binary)
    elif tensor.data is None:
        raise InputError(f"input {tensor.name!r} has neither data nor a binary_data_size parameter", 400)
    else:
        pixels = decoding.oip_tensor(
            tensor.name, tensor.datatype, tensor.shape, plane.limits, data=tensor.data
        )
    wanted = oip.requested_outputs([o.name for o in payload.outputs or []])
    binary_default = bool((payload.parameters or {}).get("binary_data_output", False))
    as_binary = {
        o.name: bool((o.parameters or {}).get("binary_data", binary_default)) for o in payload.outputs or []
    }
    prediction = await plane.classify(pixels)
    outputs, blobs = [], []
    for name, datatype, array in oip.output_tensors(prediction, wanted):
        output = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if as_binary.get(name, binary_default):
            blob = array.tobytes()
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = array.ravel().tolist()
        outputs.append(output)
    reply = {"model_name": oip.MODEL_NAME, "model_version": prediction.model_version}
    if payload.id is not None:
        reply["id"] = payload.id
    if (parameters := oip.echo(payload.parameters)) is not None:
        reply["parameters"] = parameters
    reply["outputs"] = outputs
    encoded = json.dumps(reply, separators=(",", ":")).encode()
    if blobs:
        response = Response(
            encoded + b"".join(blobs),
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(len(encoded))},
        )
    else:
        response = Response(encoded, media_type="application/json")
    tag(response, prediction)
    return response


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a request body."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InputError(
            f"Inference-Header-Content-Length {header_length!r} is not a length "
            f"within the {len(body)}-byte body",
            400,
        )
    return body[: int(header_length)], body[int(header_length) :]
