"""Turn decoded pixels into model input: the torchvision transforms of the tutorial.

Shared by training and serving, so both see exactly the same normalisation.
"""

import numpy as np
import torch
from torchvision.transforms import v2

from mnist_serve.data import MEAN, STD

# ToDtype(scale=True) maps uint8 0–255 to [0, 1] and leaves float input as is.
TRANSFORM = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([MEAN], [STD])])


def to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, 28, 28] uint8 (0–255) or float32 ([0, 1]) → normalised [N, 1, 28, 28] float32."""
    batch = torch.as_tensor(images)
    return TRANSFORM(batch.unsqueeze(1))
