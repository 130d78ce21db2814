"""POST /predict: digits as JSON, raw uint8 bytes or a PNG."""

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from mnist_serve import decoding
from mnist_serve.decoding import InputError
from mnist_serve.protocol.dataplane import dataplane, tag
from mnist_serve.schemas import PredictRequest, PredictResponse, errors

router = APIRouter()


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@router.post("/predict", response_model=PredictResponse, responses=errors(400, 413, 415, 422, 503))
async def predict(request: Request, response: Response) -> PredictResponse:
    """Classify digits sent as JSON, raw uint8 bytes (`application/octet-stream`) or a PNG."""
    plane = dataplane(request)
    body = await request.body()
    content_type = _content_type(request)
    if content_type == "application/json":
        try:
            payload = PredictRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        pixels = decoding.from_nested(payload.image, plane.limits)
    elif content_type == "application/octet-stream":
        pixels = decoding.from_raw_bytes(body, plane.limits)
    elif content_type == "image/png":
        pixels = decoding.from_png(body, plane.limits)
    else:
        raise InputError(
            f"unsupported content type {content_type or '(none)'!r}; "
            "use application/json, application/octet-stream or image/png",
            415,
        )
    prediction = await plane.classify(pixels)
    tag(response, prediction)
    return PredictResponse(
        labels=prediction.log_probs.argmax(1).tolist(),
        probabilities=np.exp(prediction.log_probs).tolist(),
        model_version=prediction.model_version,
    )
