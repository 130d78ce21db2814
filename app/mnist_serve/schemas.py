"""Request and response bodies of the HTTP API (pydantic, shown in /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME = "mnist"
OIP_INPUT = "image"


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: list = Field(
        description="One image [28, 28] or a batch [N, 28, 28] / [N, 1, 28, 28]: "
        "floats in [0, 1], or integers 0–255 when the array holds only integers.",
        examples=[[[0] * 28] * 28],
    )


class PredictResponse(BaseModel):
    labels: list[int] = Field(description="Predicted digit per image.")
    probabilities: list[list[float]] = Field(description="Class probabilities per image, 10 each.")
    model_version: str


class TutorialResponse(BaseModel):
    """The response of the public Ray Serve tutorial's `POST /`."""

    predicted_label: list[int]
    logits: list[list[float]] = Field(description="log_softmax output per image, as in the tutorial.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model_version: str | None = None
    detail: str | None = None


# Open Inference Protocol (KServe v2 / Triton) REST bodies.


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


class InferInput(BaseModel):
    name: str
    shape: list[int] = Field(description="[N, 1, 28, 28] or [N, 784].")
    datatype: Literal["FP32", "UINT8"]
    data: list = Field(description="Row-major tensor contents, flat or nested.")
    parameters: dict | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


OIP_OUTPUTS = {
    "label": ("INT64", [-1]),
    "probabilities": ("FP32", [-1, 10]),
    "logits": ("FP32", [-1, 10]),
}
