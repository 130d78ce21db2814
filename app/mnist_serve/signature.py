"""The model's tensors, declared once (as KServe's `Model.get_input_types`/`get_output_types`).

Decoders, the Open Inference Protocol metadata (REST and gRPC), the client
encoders and the load test derive shapes, names and datatypes from here.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "mnist"
SIDE = 28
PIXELS = SIDE * SIDE
CLASSES = 10


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any batch size

    def as_metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


# The input: a batch of gray images, FP32 intensities in [0, 1] or UINT8 pixels.
INPUT = Tensor("image", "FP32", (-1, 1, SIDE, SIDE))
INPUT_DATATYPES = ("FP32", "UINT8")
# Per-image shapes accepted besides the declared one: flat rows of pixels.
INPUT_IMAGE_SHAPES = ((1, SIDE, SIDE), (PIXELS,))

OUTPUTS = (
    Tensor("label", "INT64", (-1,)),
    Tensor("probabilities", "FP32", (-1, CLASSES)),
    Tensor("logits", "FP32", (-1, CLASSES)),  # log_softmax, as in the tutorial
)
OUTPUT_NAMES = tuple(t.name for t in OUTPUTS)
