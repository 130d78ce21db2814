"""Request and response bodies of the tutorial and /predict routes (pydantic, shown in /docs).

The Open Inference Protocol's bodies live with its module, protocol/oip_rest.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mnist_serve.signature import CLASSES, SIDE


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: list = Field(
        min_length=1,
        description=f"One image [{SIDE}, {SIDE}] or a batch [N, {SIDE}, {SIDE}] / [N, 1, {SIDE}, {SIDE}]: "
        "pixel values 0–255 (integers) when any is above 1, intensities in [0, 1] otherwise.",
        examples=[[[0] * SIDE] * SIDE],
    )


class PredictResponse(BaseModel):
    labels: list[int] = Field(description="Predicted digit per image.")
    probabilities: list[list[float]] = Field(description=f"Class probabilities per image, {CLASSES} each.")
    model_version: str


class TutorialResponse(BaseModel):
    """The response of the public Ray Serve tutorial's `POST /`."""

    predicted_label: list[int]
    logits: list[list[float]] = Field(description="log_softmax output per image, as in the tutorial.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model_version: str | None = None
    detail: str | None = None


class Error(BaseModel):
    """A refused request: FastAPI's `detail` (under /v2 the OIP's `{"error": ...}`)."""

    detail: str | list


def inline(schema: dict) -> dict:
    """A model's JSON schema with its `$defs` inlined, to embed in an OpenAPI request body."""
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def errors(*statuses: int, model: type[BaseModel] = Error) -> dict:
    """OpenAPI `responses` for the refusals a route can answer with."""
    return {status: {"model": model} for status in statuses}
