"""Typed configuration: the application's `args` and the classifier's `user_config`.

Serve validates a serve config's `args` against `AppArgs` at deploy time
(the builder is annotated with it), so a bad config fails with a clear
message instead of a crashed replica.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(Strict):
    """Which weights to serve, and the version name reported to clients."""

    uri: str = Field(
        description="Where the weights are: a local path or file:// URI (relative paths resolve "
        "against the replica's working directory), or s3://, gs://, https:// (see mnist_serve.weights).",
        min_length=1,
    )
    version: str = Field(description="Model version reported in responses.", min_length=1, max_length=64)
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Expected sha256 of the weights file; loading fails on a mismatch.",
    )


# The deployments each topology has (a serve config may only configure those).
DEPLOYMENTS = {"composed": ("Ingress", "Preprocessor", "Classifier"), "fused": ("Ingress",)}
# The deployment whose replicas hold the model and run its batched forward pass.
MODEL_DEPLOYMENT = {"composed": "Classifier", "fused": "Ingress"}


class Limits(Strict):
    """Bounds on one request, so that no single client can exhaust a replica."""

    max_images: int = Field(default=256, ge=1, le=4096, description="Images per request.")
    max_body_bytes: int = Field(default=8 << 20, ge=1024, description="Request body size.")
    max_png_pixels: int = Field(default=4096 * 4096, ge=784, description="Decoded PNG size.")


class Batching(Strict):
    """Dynamic batching of a deployment: its `user_config`, changeable at run time."""

    max_batch_size: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="Images in one batch (calls are gathered up to this many images; "
        "a larger request is split into batches of at most this many).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, le=1, description="How long a partial batch waits for more calls."
    )

    def apply(self, batched_method) -> None:
        """Apply to a `@serve.batch` method in place: no replica restart."""
        batched_method.set_max_batch_size(self.max_batch_size)
        batched_method.set_batch_wait_timeout_s(self.batch_wait_timeout_s)


class AppArgs(Strict):
    """The `args` of the application in the serve config."""

    model: ModelSource
    limits: Limits = Limits()
    topology: Literal["composed", "fused"] = Field(
        default="composed",
        description="composed: Ingress → Preprocessor → Classifier deployments (the model can "
        "sit on other nodes, e.g. a GPU pool); fused: the model runs inside each Ingress "
        "replica, with no hop between processes (CPU-only clusters, small models). "
        "A fused app has only the Ingress deployment.",
    )
