"""What schemathesis needs to generate the bodies whose rules JSON Schema cannot state (the
descriptions in app/mnist_serve/openapi.py say them): PNG images, raw bodies of whole images,
and OIP inputs whose shape agrees with their data. Loaded through SCHEMATHESIS_HOOKS."""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image

from mnist_serve.signature import PIXELS

# Small enough for any configured limit the serve suite runs with (max_images ≥ 4).
MAX_IMAGES = 4
MAX_SIDE = 64


@st.composite
def _png(draw: st.DrawFn) -> bytes:
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]))
    width, height = (draw(st.integers(1, MAX_SIDE)) for _ in range(2))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, format="PNG")
    return out.getvalue()


schemathesis.openapi.media_type("image/png", _png())
schemathesis.openapi.media_type(
    "application/octet-stream",
    st.integers(1, MAX_IMAGES).flatmap(lambda n: st.binary(min_size=n * PIXELS, max_size=n * PIXELS)),
)


@schemathesis.hook("map_case").apply_to(path_regex=r"/infer$")
def shape_agrees_with_data(context, case):
    """An input's shape made what its data holds: the shape of nested data, or the batch size
    of flat data (cut to whole images). The case is revalidated afterwards, so a body that
    breaks its schema stays a negative case."""
    body = case.body
    inputs = body.get("inputs") if isinstance(body, dict) else None
    tensor = inputs[0] if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) else {}
    data, shape = tensor.get("data"), tensor.get("shape")
    if isinstance(data, list) and isinstance(shape, list) and shape:
        try:
            array = np.asarray(data, dtype=float)
        except (ValueError, TypeError):  # ragged or not numbers: a negative case, left as it is
            return case
        n = array.size // PIXELS
        if array.ndim > 1:
            shape = list(array.shape)
        elif n:
            data, shape = data[: n * PIXELS], [n, *shape[1:]]
        case.body = {**body, "inputs": [{**tensor, "data": data, "shape": shape}, *inputs[1:]]}
    return case
