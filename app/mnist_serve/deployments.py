"""The model side: preprocessing, the batched classifier, and the two ways the ingress reaches
them (topologies): `Composed` (separate deployments) and `Fused` (in the ingress's process)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import ray
import torch
from ray import serve
from ray.serve.handle import DeploymentHandle

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


def images(requests: list[np.ndarray]) -> int:
    """A batch's size in images (`@serve.batch`'s `batch_size_fn`), so that `max_batch_size`
    bounds a forward pass rather than a count of calls of 1 to 256 images each."""
    return sum(len(r) for r in requests)


def split(rows: np.ndarray, requests: list[np.ndarray]) -> list[np.ndarray]:
    """Rows computed for a batch of `requests`, cut back into one part per request."""
    return np.split(rows, np.cumsum([len(r) for r in requests])[:-1])


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Preprocessor:
    """Pixels of several requests (each uint8 or [0, 1] floats) → one batch of model input."""

    def __init__(self) -> None:
        use_assigned_cpus()

    def preprocess(self, requests: list[np.ndarray]) -> np.ndarray:
        return torch.cat([to_model_input(pixels) for pixels in requests]).numpy()


@dataclasses.dataclass(frozen=True)
class Prediction:
    log_probs: np.ndarray  # [n, 10] float32, the model's log_softmax output
    model_version: str
    batch_images: int  # images in the (largest) forward pass that served this request


async def in_batches(
    batched: Callable[[np.ndarray], Awaitable[Prediction]], images: np.ndarray, max_batch_size: int
) -> Prediction:
    """`batched` (a `@serve.batch` method sized in images) on `images`, in parts that fit.

    Serve fails a single call larger than `max_batch_size` outright (ray/serve/batching.py,
    `wait_for_batch`), so a request of more images than a batch holds goes as several calls.
    """
    if len(images) <= max_batch_size:
        return await batched(images)
    parts = await asyncio.gather(
        *(batched(images[i : i + max_batch_size]) for i in range(0, len(images), max_batch_size))
    )
    return dataclasses.replace(
        parts[0],
        log_probs=np.concatenate([p.log_probs for p in parts]),
        batch_images=max(p.batch_images for p in parts),
    )


class Model:
    """The CNN loaded in this process: one forward pass over several requests' model input."""

    def __init__(self, source: ModelSource) -> None:
        use_assigned_cpus()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(source.uri, source.sha256).to(self.device)
        self.version = source.version
        self.metrics = ClassifierMetrics(source.version)

    def forward(self, requests: list[np.ndarray]) -> list[Prediction]:
        """Each request is an [n, *INPUT.shape[1:]] array of model input; n varies per request."""
        batch = torch.from_numpy(np.concatenate(requests)).to(self.device)
        self.metrics.observe_batch(len(batch))
        with torch.inference_mode():
            log_probs = self.model(batch).float().cpu().numpy()
        return [Prediction(p, self.version, len(batch)) for p in split(log_probs, requests)]

    def check_health(self) -> None:
        with torch.inference_mode():
            self.model(torch.zeros(1, *INPUT.shape[1:], device=self.device))
        self.metrics.refresh()


@serve.deployment(ray_actor_options={"num_cpus": 1}, user_config=Batching().model_dump())
class Classifier:
    """The CNN behind dynamic request batching.

    Concurrent `predict` calls are gathered into one forward pass of at most
    `max_batch_size` images. The batch size and wait timeout come from
    `user_config`, so a new serve config changes them in place, without
    restarting the replica.
    """

    def __init__(self, model: ModelSource) -> None:
        self.model = Model(model)
        self.batching = Batching()

    def reconfigure(self, user_config: dict) -> None:
        self.batching = Batching.model_validate(user_config)
        self.batching.apply(self._forward)

    async def predict(self, model_input: np.ndarray) -> Prediction:
        """[n, *INPUT.shape[1:]] model input, in forward passes of at most `max_batch_size` images."""
        return await in_batches(self._forward, model_input, self.batching.max_batch_size)

    @serve.batch(**Batching().model_dump(), batch_size_fn=images)
    async def _forward(self, requests: list[np.ndarray]) -> list[Prediction]:
        return self.model.forward(requests)

    def model_version(self) -> str:
        return self.model.version

    def check_health(self) -> None:
        """Ray restarts a replica whose model can no longer run a forward pass."""
        self.model.check_health()


class Composed:
    """The ingress's model, two deployments away: Preprocessor → Classifier (e.g. on GPU nodes)."""

    def __init__(self, preprocessor: DeploymentHandle, classifier: DeploymentHandle) -> None:
        self.preprocessor = preprocessor
        self.classifier = classifier

    async def predict(self, requests: list[np.ndarray]) -> Prediction:
        model_input = self.preprocessor.preprocess.remote(requests)
        return await self.classifier.predict.remote(model_input)

    def start(self) -> Composed:
        return self

    async def model_version(self) -> str:
        return await self.classifier.model_version.remote()

    def check_health(self) -> None:
        """Nothing here: each Classifier replica runs its own check."""


class Fused:
    """The ingress's model in its own process: no hop between deployments (CPU-only clusters).

    Forward passes run one at a time on a thread of their own, so that the replica's event loop
    keeps reading and answering requests meanwhile (torch releases the GIL while it computes).
    """

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.model: Model | None = None
        self.compute: ThreadPoolExecutor | None = None

    def start(self) -> Fused:
        """The model loaded, in the ingress replica rather than where the app is built: a new
        instance, since Serve pickles the replica's init arguments (this one) after `__init__`."""
        started = Fused(self.source)
        started.model = Model(self.source)
        started.compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        return started

    async def predict(self, requests: list[np.ndarray]) -> Prediction:
        return await asyncio.get_running_loop().run_in_executor(self.compute, self._predict, requests)

    def _predict(self, requests: list[np.ndarray]) -> Prediction:
        model_input = torch.cat([to_model_input(pixels) for pixels in requests]).numpy()
        (prediction,) = self.model.forward([model_input])
        return prediction

    async def model_version(self) -> str:
        return self.model.version

    def check_health(self) -> None:
        self.model.check_health()
