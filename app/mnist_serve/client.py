"""How to call the service in each format it accepts.

One place that knows every wire format, used by the tests, the benchmark
and the load test, and a reference for client authors:

    request = client.encode("raw", images)   # images: uint8 [N, 28, 28]
    reply = requests.post(base_url + request.path, data=request.body, headers=request.headers)
    client.labels("raw", reply.json())

`python -m mnist_serve.client` writes a real test digit in every format for curl.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_serve import data
from mnist_serve.signature import INPUT, MODEL_NAME, PIXELS, SIDE

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


def _unit_floats(images: np.ndarray) -> list:
    # Four decimals resolve every 1/255 step and keep the body small.
    return np.round(images / 255.0, 4).tolist()


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def _oip(images: np.ndarray, datatype: str, shape: list[int], data: list) -> bytes:
    tensor = {"name": INPUT.name, "datatype": datatype, "shape": shape, "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def _oip_binary(images: np.ndarray) -> Request:
    """Triton's binary tensor data extension: a JSON header, then the raw uint8 pixels."""
    raw = images.astype(np.uint8).tobytes()
    tensor = {
        "name": INPUT.name,
        "datatype": "UINT8",
        "shape": [len(images), PIXELS],
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor], "outputs": [{"name": "label"}]}).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return Request(INFER_PATH, header + raw, headers)


INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"

ENCODERS = {
    # The public tutorial's client: json=json.dumps(...), floats [N, 1, 28, 28].
    "tutorial": lambda x: Request(
        "/", json.dumps(json.dumps({"image": _unit_floats(x[:, None])})).encode(), JSON
    ),
    "json": lambda x: Request("/predict", json.dumps({"image": _unit_floats(x)}).encode(), JSON),
    "json-uint8": lambda x: Request("/predict", json.dumps({"image": x[:, None].tolist()}).encode(), JSON),
    "raw": lambda x: Request(
        "/predict", x.astype(np.uint8).tobytes(), {"content-type": "application/octet-stream"}
    ),
    "png": lambda x: Request("/predict", _png(x[0]), {"content-type": "image/png"}),
    "oip-fp32": lambda x: Request(
        INFER_PATH, _oip(x, "FP32", [len(x), 1, SIDE, SIDE], np.round(x.ravel() / 255.0, 4).tolist()), JSON
    ),
    "oip-uint8": lambda x: Request(INFER_PATH, _oip(x, "UINT8", [len(x), PIXELS], x.ravel().tolist()), JSON),
    "oip-binary": _oip_binary,
}
FORMATS = tuple(ENCODERS)
# Formats that carry one image per request.
SINGLE_IMAGE = {"png"}


def encode(fmt: str, images: np.ndarray) -> Request:
    """A request for uint8 images [N, 28, 28] (N = 1 for single-image formats)."""
    if fmt in SINGLE_IMAGE and len(images) != 1:
        raise ValueError(f"format {fmt!r} carries exactly one image")
    return ENCODERS[fmt](images)


def labels(fmt: str, reply: dict) -> list[int]:
    """The predicted labels in a reply to a request made by `encode(fmt, ...)`."""
    if fmt == "tutorial":
        return reply["predicted_label"]
    if fmt.startswith("oip"):
        return next(o["data"] for o in reply["outputs"] if o["name"] == "label")
    return reply["labels"]


def write_samples(out: Path, index: int = 0) -> dict[str, Path]:
    """Write one real test digit as a request body in every format, for curl."""
    split = data.load("test")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in FORMATS:
        path = out / f"{fmt}.body"
        path.write_bytes(encode(fmt, split.images[index : index + 1]).body)
        written[fmt] = path
    (out / "label.txt").write_text(f"{split.labels[index]}\n")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Write request bodies for one MNIST test digit.")
    parser.add_argument("--out", type=Path, default=Path("artifacts/samples"))
    parser.add_argument("--index", type=int, default=0, help="which of the 10,000 test images")
    args = parser.parse_args()
    for fmt, path in write_samples(args.out, args.index).items():
        print(f"{path}  ({fmt})")
    print(f"expected label: {(args.out / 'label.txt').read_text().strip()}")


if __name__ == "__main__":
    main()
