"""Request decoding: every accepted shape and encoding, and every refusal."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from mnist_serve import decoding
from mnist_serve.config import Limits
from mnist_serve.decoding import InputError

LIMITS = Limits(max_images=4, max_png_pixels=100 * 100)
RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)


def png(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("value", "shape", "dtype"),
    [
        (U8[0].tolist(), (1, 28, 28), np.uint8),
        (U8.tolist(), (3, 28, 28), np.uint8),
        (U8[:, None].tolist(), (3, 28, 28), np.uint8),
        ((U8 / 255).tolist(), (3, 28, 28), np.float32),
        ((U8[:, None] / 255).tolist(), (3, 28, 28), np.float32),
        # JSON does not tell 255 from 255.0
        (U8.astype(float).tolist(), (3, 28, 28), np.uint8),
    ],
)
def test_nested_shapes_and_dtypes(value, shape, dtype):
    pixels = decoding.from_nested(value, LIMITS)
    assert pixels.shape == shape and pixels.dtype == dtype
    scale = 255 if dtype == np.float32 else 1
    np.testing.assert_allclose(pixels.reshape(-1, 784) * scale, U8[: shape[0]].reshape(-1, 784), atol=1e-4)


def test_values_up_to_1_are_intensities_whether_written_as_integers_or_not():
    """Nor 1 from 1.0: an array whose values are all 0 or 1 holds intensities."""
    for one in (1, 1.0):
        pixels = decoding.from_nested([[0, one] * 14] * 28, LIMITS)
        assert pixels.dtype == np.float32 and pixels.max() == 1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "must be an array"),
        ([[0] * 28] * 27, "shape [27, 28]"),
        ([[[[0] * 28] * 28] * 2] * 2, "shape [2, 2, 28, 28]"),
        ([[0] * 28] * 27 + [[0] * 27], "not a rectangular array"),
        ([["a"] * 28] * 28, "only numbers"),
        ([[True] * 28] * 28, "only numbers"),
        ([], "no images"),
        ([[0.5] * 28] * 27 + [[float("nan")] * 28], "NaN or infinite"),
        ([[0.5] * 28] * 27 + [[float("inf")] * 28], "NaN or infinite"),
        ([[1.5] * 28] * 28, "holds 1.5: pixel values must be integers 0–255"),
        ([[0.5] * 28] * 27 + [[200] * 28], "holds 0.5: pixel values must be integers 0–255"),
        ([[-0.1] * 28] * 28, "outside [0, 1]"),
        ([[256] * 28] * 28, "outside 0–255"),
        ([[-1] * 28] * 27 + [[200] * 28], "outside 0–255"),
        ([[-1] * 28] * 28, "outside [0, 1]"),
        ([[[0] * 28] * 28] * 5, "at most 4"),
    ],
)
def test_nested_refusals(value, message):
    with pytest.raises(InputError, match=None) as caught:
        decoding.from_nested(value, LIMITS)
    assert message in str(caught.value)
    assert 400 <= caught.value.status < 500


def test_raw_bytes():
    pixels = decoding.from_raw_bytes(U8.tobytes(), LIMITS)
    assert pixels.shape == (3, 28, 28) and (pixels == U8).all()


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [(b"\0" * 785, "multiple of 784", 422), (b"", "no images", 422), (b"\0" * 784 * 5, "at most 4", 413)],
)
def test_raw_bytes_refusals(body, message, status):
    with pytest.raises(InputError) as caught:
        decoding.from_raw_bytes(body, LIMITS)
    assert message in str(caught.value) and caught.value.status == status


def test_png_exact_size_is_lossless():
    assert (decoding.from_png(png(U8[0]), LIMITS)[0] == U8[0]).all()


def test_png_any_size_and_mode_becomes_28x28_gray():
    big = np.kron(U8[0], np.ones((3, 3), dtype=np.uint8))  # 84×84, each pixel 3×3
    pixels = decoding.from_png(png(big, "RGBA"), LIMITS)
    assert pixels.shape == (1, 28, 28) and pixels.dtype == np.uint8
    assert np.abs(pixels[0].astype(int) - U8[0]).max() <= 1


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [
        (b"not a png", "not a readable PNG", 400),
        (png(np.zeros((101, 100), np.uint8)), "at most 10000 pixels", 413),
        (png(U8[0])[:60], "not a readable PNG", 400),
    ],
)
def test_png_refusals(body, message, status):
    with pytest.raises(InputError) as caught:
        decoding.from_png(body, LIMITS)
    assert message in str(caught.value) and caught.value.status == status


def test_jpeg_is_not_a_png():
    buffer = io.BytesIO()
    Image.fromarray(U8[0]).save(buffer, "JPEG")
    with pytest.raises(InputError, match="not a readable PNG"):
        decoding.from_png(buffer.getvalue(), LIMITS)


@pytest.mark.parametrize("encode", [lambda o: json.dumps(o), lambda o: json.dumps(json.dumps(o))])
def test_tutorial_body_plain_and_double_encoded(encode):
    body = encode({"image": (U8[:2, None] / 255).tolist()}).encode()
    assert decoding.from_tutorial_body(body, LIMITS).shape == (2, 28, 28)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"image": [', "invalid JSON"),
        (b'"{not json"', "invalid JSON"),
        (b'{"image": NaN}', "NaN is not a JSON number"),
        (b"[1, 2]", 'must be a JSON object {"image"'),
        (b'{"pixels": []}', 'must be a JSON object {"image"'),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
def test_tutorial_body_refusals(body, message):
    with pytest.raises(InputError) as caught:
        decoding.from_tutorial_body(body, LIMITS)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("data", "shape", "datatype"),
    [
        (U8.ravel().tolist(), [3, 784], "UINT8"),
        (U8.ravel().astype(float).tolist(), [3, 1, 28, 28], "UINT8"),
        ((U8 / 255).ravel().tolist(), [3, 1, 28, 28], "FP32"),
        ((U8 / 255).reshape(3, 784).tolist(), [3, 784], "FP32"),
    ],
)
def test_oip_tensor(data, shape, datatype):
    pixels = decoding.oip_tensor("image", datatype, shape, LIMITS, data=data)
    scale = 255 if datatype == "FP32" else 1
    np.testing.assert_allclose(pixels.astype(float) * scale, U8, atol=1e-4)


@pytest.mark.parametrize(
    ("data", "shape", "datatype", "message"),
    [
        ([0] * 784, [1, 28, 28], "UINT8", "not supported"),
        ([0] * 783, [1, 784], "UINT8", "needs 784"),
        ([0.5] * 784, [1, 784], "UINT8", "must be integers"),
        ([[0] * 784], [1, 1, 28, 28], "UINT8", "nested as [1, 784], not as its shape [1, 1, 28, 28]"),
        ([2.0] * 784, [1, 784], "FP32", "outside [0, 1]"),
        ([300] * 784, [1, 784], "UINT8", "outside 0–255"),
        (["x"] * 784, [1, 784], "UINT8", "only numbers"),
        ([0] * 784 * 5, [5, 784], "UINT8", "at most 4"),
        ([0] * 784, [1, 784], "INT32", "datatype 'INT32' is not supported"),
        ([0] * 784, [-1, 784], "UINT8", "not supported"),
    ],
)
def test_oip_tensor_refusals(data, shape, datatype, message):
    with pytest.raises(InputError) as caught:
        decoding.oip_tensor("image", datatype, shape, LIMITS, data=data)
    assert message in str(caught.value)
    assert 400 <= caught.value.status < 500


@pytest.mark.parametrize(
    ("raw", "shape", "datatype"),
    [
        (U8.tobytes(), [3, 784], "UINT8"),
        ((U8 / 255).astype("<f4").tobytes(), [3, 1, 28, 28], "FP32"),
    ],
)
def test_oip_tensor_raw(raw, shape, datatype):
    """Raw little-endian contents: gRPC raw_input_contents and Triton's binary tensor data."""
    pixels = decoding.oip_tensor("image", datatype, shape, LIMITS, raw=raw)
    scale = 255 if datatype == "FP32" else 1
    np.testing.assert_allclose(pixels.astype(float) * scale, U8, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "raw", "shape", "datatype", "message"),
    [
        ("input__0", U8.tobytes(), [3, 784], "UINT8", "unknown input 'input__0'"),
        ("image", U8.tobytes()[:-1], [3, 784], "UINT8", "needs 2352"),
        ("image", U8.tobytes(), [3, 784], "FP32", "needs 9408"),
        ("image", np.full(784, np.nan, "<f4").tobytes(), [1, 784], "FP32", "NaN"),
    ],
)
def test_oip_raw_refusals(name, raw, shape, datatype, message):
    with pytest.raises(InputError) as caught:
        decoding.oip_tensor(name, datatype, shape, LIMITS, raw=raw)
    assert message in str(caught.value)
    assert caught.value.status == 400
