"""The request bodies of the inference routes in the OpenAPI document, exactly as accepted.

The routes read raw bodies (JSON, raw pixels, PNG, Triton's binary tensors), so FastAPI cannot
derive their schemas from the handlers' signatures. They are written here from the model's
signature and the replica's limits, so that a schema-valid request is a served one
(tests/serve/test_openapi.py runs schemathesis with no status accepted but 2xx for them).
Three rules are beyond JSON Schema, and stated in the descriptions: an OIP input's shape and
the number of values in its `data` agree; a raw body is whole images; a PNG decodes.
"""

from __future__ import annotations

import copy

from fastapi import FastAPI

from mnist_serve.config import Limits
from mnist_serve.protocol.oip_rest import InferRequest
from mnist_serve.schemas import PredictRequest, inline
from mnist_serve.signature import INPUT, INPUT_IMAGE_SHAPES, OUTPUT_NAMES, PIXELS, SIDE

# What a pixel array may hold: integer pixel values 0–255, or intensities in [0, 1]
# (decoding.from_nested tells them apart by their values, as JSON Schema does).
PIXEL_VALUES = {"integer": {"minimum": 0, "maximum": 255}, "number": {"minimum": 0, "maximum": 1}}
# Triton's datatypes of the input, and the values each holds (decoding.oip_tensor).
DATATYPE_VALUES = {"UINT8": "integer", "FP32": "number"}


def _array(items: dict, least: int, most: int | None = None) -> dict:
    return {"type": "array", "items": items, "minItems": least, "maxItems": most or least}


def _pixels(value: str) -> dict:
    return {"type": value, **PIXEL_VALUES[value]}


def image_arrays(value: str, limits: Limits) -> list[dict]:
    """[28, 28], [N, 28, 28] and [N, 1, 28, 28] arrays of one kind of pixel value."""
    image = _array(_array(_pixels(value), SIDE), SIDE)
    return [image, _array(image, 1, limits.max_images), _array(_array(image, 1), 1, limits.max_images)]


def _json(schema: dict, **more: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}, **more}}


def _image_request(limits: Limits) -> dict:
    """PredictRequest's schema with the arrays its `image` may be."""
    schema = inline(PredictRequest.model_json_schema())
    schema["properties"]["image"] = {
        "anyOf": [form for value in PIXEL_VALUES for form in image_arrays(value, limits)],
        "description": f"One image [{SIDE}, {SIDE}] or a batch [N, {SIDE}, {SIDE}] / [N, 1, {SIDE}, {SIDE}], "
        f"N ≤ {limits.max_images}: pixel values 0–255 (integers) or intensities in [0, 1].",
    }
    return schema


def predict_body(limits: Limits) -> dict:
    binary = {"type": "string", "format": "binary"}
    return _json(
        _image_request(limits),
        **{
            "application/octet-stream": {
                "schema": {**binary, "description": f"N×{PIXELS} uint8 pixels, 1 ≤ N ≤ {limits.max_images}."}
            },
            "image/png": {
                "schema": {
                    **binary,
                    "description": f"A PNG of at most {limits.max_png_pixels} pixels, made {SIDE}×{SIDE} "
                    "gray.",
                }
            },
        },
    )


def tutorial_body(limits: Limits) -> dict:
    # Unknown keys are ignored. The tutorial's own client sends this object JSON-encoded once
    # more (a JSON string): accepted too, but not something JSON Schema can state.
    return _json({**_image_request(limits), "additionalProperties": True})


def infer_body(limits: Limits) -> dict:
    """InferRequest's schema with one input of the model's name, shapes and datatypes (each with
    its values) and outputs of the model's names."""
    schema = inline(InferRequest.model_json_schema())
    request = schema["properties"]
    base = request["inputs"]["items"]
    shapes = [
        {
            "type": "array",
            "prefixItems": [
                {"type": "integer", "minimum": 1, "maximum": limits.max_images},
                *({"const": d} for d in shape),
            ],
            "items": False,
            "minItems": 1 + len(shape),
        }
        for shape in INPUT_IMAGE_SHAPES
    ]
    inputs = []
    for datatype, value in DATATYPE_VALUES.items():
        tensor = copy.deepcopy(base)
        flat = _array(_pixels(value), PIXELS, PIXELS * limits.max_images)
        nested = []
        for image in INPUT_IMAGE_SHAPES:
            form = _pixels(value)
            for side in reversed(image):
                form = _array(form, side)
            nested.append(_array(form, 1, limits.max_images))
        tensor["properties"] |= {
            "name": {"const": INPUT.name},
            "shape": {"anyOf": shapes, "description": base["properties"]["shape"]["description"]},
            "datatype": {"const": datatype},
            "data": {
                "anyOf": [flat, *nested],
                "description": "Row-major contents, flat or nested as the shape is: as many values as "
                "the shape holds.",
            },
        }
        # `binary_data_size` comes with Triton's binary tensor data only (its bytes follow the header).
        parameters = tensor["properties"]["parameters"]["anyOf"]
        parameters[0] = {**parameters[0], "not": {"required": ["binary_data_size"]}}
        tensor["required"] = ["name", "shape", "datatype", "data"]
        inputs.append(tensor)
    request["inputs"]["items"] = {"anyOf": inputs}
    request["outputs"]["anyOf"][0]["items"]["properties"]["name"]["enum"] = list(OUTPUT_NAMES)
    schema["description"] = (
        "JSON. Triton's binary tensor data extension is accepted too: the JSON header is the first "
        "Inference-Header-Content-Length bytes, and each input's `binary_data_size` bytes follow it."
    )
    return _json(schema)


def document(app: FastAPI, limits: Limits) -> None:
    """Add the inference routes' request bodies to the app's OpenAPI document."""
    infer = infer_body(limits)
    bodies = {
        "/": tutorial_body(limits),
        "/predict": predict_body(limits),
        "/v2/models/{model_name}/infer": infer,
        "/v2/models/{model_name}/versions/{model_version}/infer": infer,
    }
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            for path, body in bodies.items():
                generate()["paths"][path]["post"]["requestBody"] = body
        return app.openapi_schema

    app.openapi = openapi
