"""The one classify path every protocol uses (KServe's `protocol/dataplane.py`).

Pixels in, a `Prediction` out: concurrent requests are gathered (`@serve.batch`,
sized in images by the ingress's `user_config`) into one call of the model per
group. With the `Composed` topology that is one preprocessor call and one
classifier call per group rather than per request, since the calls between
deployments, not the model, dominate the cost of small requests; `Fused`, each
group is one forward pass in the ingress replica.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
from fastapi import Request, Response
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from mnist_serve import metrics
from mnist_serve.config import Batching, Limits
from mnist_serve.decoding import InputError
from mnist_serve.deployments import Composed, Fused, Prediction, images, in_batches, split

HEALTH_TIMEOUT_S = 5.0
VERSION_HEADER = "x-model-version"
BATCH_HEADER = "x-batch-size"


class DataPlane:
    def __init__(self, model: Composed | Fused, limits: Limits) -> None:
        self.model = model
        self.limits = limits
        self.batching = Batching()

    def reconfigure(self, batching: Batching) -> None:
        self.batching = batching
        batching.apply(self._pipeline)

    # Several groups in flight: the next one is preprocessed while the classifier works.
    @serve.batch(**Batching().model_dump(), max_concurrent_batches=4, batch_size_fn=images)
    async def _pipeline(self, requests: list[np.ndarray]) -> list[Prediction]:
        prediction = await self.model.predict(requests)
        return [dataclasses.replace(prediction, log_probs=p) for p in split(prediction.log_probs, requests)]

    async def classify(self, pixels: np.ndarray) -> Prediction:
        """[N, 28, 28] pixels (uint8 or [0, 1] floats) → the model's answer for each image."""
        metrics.count_images(len(pixels))
        try:
            return await in_batches(self._pipeline, pixels, self.batching.max_batch_size)
        except BackPressureError:
            raise InputError("the model is at capacity; retry shortly", 503) from None
        except RayActorError:
            # A replica died under this request (its node was lost); Serve is replacing it.
            metrics.refused("replica_lost")
            raise InputError("a model replica was lost; retry shortly", 503) from None

    async def model_version(self) -> str:
        return await asyncio.wait_for(self.model.model_version(), HEALTH_TIMEOUT_S)

    async def ready(self) -> bool:
        try:
            await self.model_version()
        except Exception:  # any failure to reach the model means not ready
            return False
        return True


def dataplane(request: Request) -> DataPlane:
    """FastAPI dependency: the data plane of the ingress replica serving this request."""
    return request.app.state.dataplane


def tag(response: Response, prediction: Prediction) -> None:
    """Which model version and how large a forward pass served the request (response headers)."""
    response.headers[VERSION_HEADER] = prediction.model_version
    response.headers[BATCH_HEADER] = str(prediction.batch_images)
