"""The model-side deployments: preprocessing and the batched classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ray
import torch
from ray import serve

from mnist_serve.config import Batching, ModelSource
from mnist_serve.metrics import ClassifierMetrics
from mnist_serve.preprocessing import to_model_input
from mnist_serve.signature import INPUT
from mnist_serve.weights import load_model


def use_assigned_cpus() -> None:
    """Size torch's thread pool to the CPUs Ray reserved for this replica.

    Without this torch starts one thread per core of the node and replicas
    sharing a node fight over the cores.
    """
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, math.floor(cpus)))


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Preprocessor:
    """Pixels of several requests (each uint8 or [0, 1] floats) → one batch of model input."""

    def __init__(self) -> None:
        use_assigned_cpus()

    def preprocess(self, requests: list[np.ndarray]) -> np.ndarray:
        return torch.cat([to_model_input(pixels) for pixels in requests]).numpy()


@dataclass(frozen=True)
class Prediction:
    log_probs: np.ndarray  # [n, CLASSES] float32, the model's log_softmax output
    model_version: str
    batch_images: int  # images in the forward pass that served this request


@serve.deployment(ray_actor_options={"num_cpus": 1}, user_config=Batching().model_dump())
class Classifier:
    """The CNN behind dynamic request batching.

    Concurrent `predict` calls are gathered into one forward pass. The batch
    size and wait timeout come from `user_config`, so a new serve config
    changes them in place, without restarting the replica.
    """

    def __init__(self, model: ModelSource) -> None:
        use_assigned_cpus()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(model.uri, model.sha256).to(self.device)
        self.version = model.version
        self.metrics = ClassifierMetrics(model.version)

    def reconfigure(self, user_config: dict) -> None:
        Batching.model_validate(user_config).apply(self.predict)

    @serve.batch(**Batching().model_dump())
    async def predict(self, requests: list[np.ndarray]) -> list[Prediction]:
        """Each request is an [n, *INPUT.shape[1:]] array of model input; n varies per request."""
        sizes = [len(r) for r in requests]
        batch = torch.from_numpy(np.concatenate(requests)).to(self.device)
        self.metrics.observe_batch(len(batch))
        with torch.inference_mode():
            log_probs = self.model(batch).float().cpu().numpy()
        parts = np.split(log_probs, np.cumsum(sizes)[:-1])
        return [Prediction(p, self.version, len(batch)) for p in parts]

    def model_version(self) -> str:
        return self.version

    def check_health(self) -> None:
        """Ray restarts a replica whose model can no longer run a forward pass."""
        with torch.inference_mode():
            self.model(torch.zeros(1, *INPUT.shape[1:], device=self.device))
        self.metrics.refresh()
