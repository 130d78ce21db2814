"""Decode request bodies into pixel arrays. Pure functions: no Ray, no torch.

Every decoder returns `[N, 28, 28]` pixels, either uint8 (0–255) or float32
([0, 1]), or raises `InputError` naming what is wrong with the input, which
the HTTP layer turns into a 4xx response.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_serve.config import Limits
from mnist_serve.signature import INPUT, INPUT_DATATYPES, INPUT_IMAGE_SHAPES, PIXELS, SIDE


class InputError(ValueError):
    """The request is invalid; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def check_batch_size(n: int, limits: Limits) -> None:
    if n == 0:
        raise InputError("the request holds no images")
    if n > limits.max_images:
        raise InputError(f"the request holds {n} images; at most {limits.max_images} are allowed", 413)


def from_nested(values: object, limits: Limits, *, name: str = "image") -> np.ndarray:
    """JSON arrays → pixels.

    Shapes: [28, 28], [N, 28, 28] or [N, 1, 28, 28]. Values are 0–255 pixel values when any
    is above 1 (then all must be integers), intensities in [0, 1] otherwise: JSON does not
    tell 1 from 1.0, so neither does this.
    """
    if not isinstance(values, list):
        raise InputError(f"'{name}' must be an array of pixel rows, got {type(values).__name__}")
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nesting
        raise InputError(f"'{name}' is not a rectangular array: {exc}") from None
    if array.dtype == bool or array.dtype.kind not in "iuf":
        raise InputError(
            f"'{name}' must hold only numbers (got {array.dtype.kind!r} elements, ragged rows or strings)"
        )
    return from_array(array, limits, name=name)


def from_array(
    array: np.ndarray, limits: Limits, *, name: str = "image", datatype: str | None = None
) -> np.ndarray:
    """A numeric array of one of the accepted shapes → pixels. `datatype` says what its values
    are, "UINT8" pixel values or "FP32" intensities; None reads it from them (`from_nested`)."""
    if array.size == 0:
        raise InputError(f"'{name}' is empty: the request holds no images")
    shape = list(array.shape)
    if array.ndim == 2:
        array = array[np.newaxis]
    elif array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (SIDE, SIDE):
        raise InputError(f"'{name}' has shape {shape}; expected [28, 28], [N, 28, 28] or [N, 1, 28, 28]")
    check_batch_size(array.shape[0], limits)
    if not np.isfinite(array).all():
        raise InputError(f"'{name}' contains NaN or infinite values")
    low, high = array.min(), array.max()
    if (datatype or ("UINT8" if high > 1 else "FP32")) == "FP32":
        if low < 0 or high > 1:
            raise InputError(f"'{name}' holds values outside [0, 1] (min {low:g}, max {high:g})")
        return array.astype(np.float32, copy=False)
    if array.dtype.kind == "f" and (fraction := array[array != np.round(array)]).size:
        raise InputError(
            f"'{name}' holds {fraction[0]:g}: pixel values must be integers 0–255 (intensities are in [0, 1])"
        )
    if low < 0 or high > 255:
        raise InputError(f"'{name}' holds pixel values outside 0–255 (min {low:g}, max {high:g})")
    return array.astype(np.uint8)


def from_raw_bytes(body: bytes, limits: Limits) -> np.ndarray:
    """`application/octet-stream`: N×784 uint8 pixels, row-major."""
    if len(body) % PIXELS:
        raise InputError(
            f"a raw body must be a multiple of {PIXELS} bytes (28×28 uint8 per image); got {len(body)}"
        )
    check_batch_size(len(body) // PIXELS, limits)
    return np.frombuffer(bytearray(body), dtype=np.uint8).reshape(-1, SIDE, SIDE)


def from_png(body: bytes, limits: Limits) -> np.ndarray:
    """`image/png` of any size → one 28×28 grayscale image."""
    try:
        with Image.open(io.BytesIO(body), formats=["PNG"]) as image:
            if image.width * image.height > limits.max_png_pixels:
                raise InputError(
                    f"the PNG is {image.width}×{image.height}; "
                    f"at most {limits.max_png_pixels} pixels are allowed",
                    413,
                )
            gray = image.convert("L")
            if gray.size != (SIDE, SIDE):
                # Area averaging when shrinking keeps strokes' intensity, as MNIST's own
                # anti-aliased downscaling did; bilinear when enlarging.
                shrinking = gray.width >= SIDE and gray.height >= SIDE
                resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
                gray = gray.resize((SIDE, SIDE), resample)
            return np.asarray(gray, dtype=np.uint8)[np.newaxis]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"the body is not a readable PNG image: {exc}", 400) from None


def parse_json(body: bytes) -> object:
    """Strict JSON: NaN and Infinity literals are refused rather than let through."""

    def refuse(literal: str) -> float:
        raise InputError(f"invalid JSON: {literal} is not a JSON number", 400)

    try:
        return json.loads(body, parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"invalid JSON: {exc}", 400) from None


def from_tutorial_body(body: bytes, limits: Limits) -> np.ndarray:
    """The public tutorial's `POST /` body.

    Its client posts `json=json.dumps({"image": ...})`: a JSON string that
    holds the JSON object. A plain JSON object works too.
    """
    payload = parse_json(body)
    if isinstance(payload, str):
        payload = parse_json(payload.encode())
    if not isinstance(payload, dict) or "image" not in payload:
        raise InputError('the body must be a JSON object {"image": [...]} (or a JSON string holding one)')
    return from_nested(payload["image"], limits)


_RAW_DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype(np.uint8)}


def oip_tensor(
    name: str,
    datatype: str,
    shape: list[int],
    limits: Limits,
    *,
    data: list | None = None,
    raw: bytes | None = None,
) -> np.ndarray:
    """An Open Inference Protocol input tensor → pixels; errors are 400s naming the problem.

    Its contents are either `data` (JSON numbers, flat or nested) or `raw`
    (little-endian row-major bytes: gRPC `raw_input_contents`, Triton's binary
    tensor data extension).
    """
    if name != INPUT.name:
        raise InputError(f"unknown input {name!r}; the model's input is {INPUT.name!r}", 400)
    if datatype not in INPUT_DATATYPES:
        raise InputError(f"input datatype {datatype!r} is not supported; use one of {INPUT_DATATYPES}", 400)
    if len(shape) < 2 or tuple(shape[1:]) not in INPUT_IMAGE_SHAPES or shape[0] < 0:
        accepted = " or ".join(str(["N", *s]).replace("'", "") for s in INPUT_IMAGE_SHAPES)
        raise InputError(f"input shape {list(shape)} is not supported; use {accepted}", 400)
    n = shape[0]
    try:
        check_batch_size(n, limits)
    except InputError as exc:  # OIP answers 400 for what /predict calls 422
        raise InputError(str(exc), 413 if exc.status == 413 else 400) from None
    if raw is not None:
        dtype = _RAW_DTYPES[datatype]
        if len(raw) != n * PIXELS * dtype.itemsize:
            raise InputError(
                f"input holds {len(raw)} bytes but {datatype} shape {list(shape)} needs "
                f"{n * PIXELS * dtype.itemsize}",
                400,
            )
        array = np.frombuffer(raw, dtype=dtype)
    else:
        try:
            array = np.asarray(data)
        except ValueError:
            raise InputError("input data is not a rectangular array", 400) from None
        if array.dtype == bool or array.dtype.kind not in "iuf":
            raise InputError("input data must hold only numbers", 400)
        if array.ndim > 1 and list(array.shape) != list(shape):
            raise InputError(
                f"input data is nested as {list(array.shape)}, not as its shape {list(shape)}", 400
            )
        if array.size != n * PIXELS:
            raise InputError(
                f"input data holds {array.size} values but shape {list(shape)} needs {n * PIXELS}", 400
            )
    try:
        return from_array(array.reshape(n, SIDE, SIDE), limits, name=name, datatype=datatype)
    except InputError as exc:
        raise InputError(str(exc), 400) from None
