"""The application's own Prometheus metrics (Ray Serve's `ray.serve.metrics`).

Ray exports them on every node's metrics port (8080 in a KubeRay pod) with the prefix `ray_`,
beside Serve's own `ray_serve_*` series; Serve adds the `deployment`, `replica` and
`application` labels. The README's metrics table documents names and labels.

Two hooks, both protocol-agnostic:
- `RequestMetrics`, an ASGI middleware on the ingress app, and `rpc`, its gRPC counterpart
  around each OIP RPC: requests by route, format and status, rejections by reason, and images
  per route and format (counted by `count_images` wherever a request's pixels are decoded; a
  refusal's reason comes from its status, or from `refused` where the status alone does not say);
- `ClassifierMetrics`, created by the classifier: images per forward pass and the model version
  (refreshed by its health check).
Metric objects are created on first use, inside the replica, where Serve's tags are known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from contextvars import ContextVar

from ray.serve.metrics import Counter, Gauge, Histogram

# The request body's format, from its content type; anything else is "other".
FORMATS = {"application/json": "json", "application/octet-stream": "raw", "image/png": "png"}
# Why a request was refused, from the status the ingress answered with.
REASONS = {
    400: "bad_request",
    404: "unknown_model",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "overloaded",
    503: "overloaded",  # unless `refused` says otherwise (e.g. replica_lost)
}
# Images per forward pass: powers of two up to the largest request (4096 images).
BATCH_BUCKETS = [2.0**i for i in range(13)]


@dataclasses.dataclass
class _Tally:
    """What the request being served records beside its status (set below, read by the hooks)."""

    images: int = 0
    reason: str | None = None


_request: ContextVar[_Tally | None] = ContextVar("mnist_serve_request", default=None)


@functools.cache
def _ingress() -> tuple[Counter, Counter, Counter]:
    requests = Counter(
        "mnist_serve_requests",
        description="HTTP requests answered by the ingress, by route template, body format and status.",
        tag_keys=("route", "method", "format", "status"),
    )
    images = Counter(
        "mnist_serve_images",
        description="Images in requests that reached the model, by route template and body format.",
        tag_keys=("route", "format"),
    )
    rejected = Counter(
        "mnist_serve_rejected_requests",
        description="Requests refused by the ingress (4xx; 503: overloaded or replica_lost), by reason.",
        tag_keys=("route", "reason"),
    )
    return requests, images, rejected


def count_images(n: int) -> None:
    """Record that the request being served holds `n` images (no-op outside a request)."""
    tally = _request.get()
    if tally is not None:
        tally.images += n


def refused(reason: str) -> None:
    """Record why the request being served is refused, where its status has several reasons."""
    tally = _request.get()
    if tally is not None:
        tally.reason = reason


def _record(route: str, method: str, body_format: str, status: int, tally: _Tally) -> None:
    requests, image_counter, rejected = _ingress()
    requests.inc(tags={"route": route, "method": method, "format": body_format, "status": str(status)})
    if tally.images:
        image_counter.inc(tally.images, tags={"route": route, "format": body_format})
    if status in REASONS:
        rejected.inc(tags={"route": route, "reason": tally.reason or REASONS[status]})


@contextlib.contextmanager
def rpc(name: str):
    """Around one OIP gRPC call: recorded as route `/inference.GRPCInferenceService/<name>`,
    method `gRPC`, format `grpc`, with the HTTP status its outcome maps to (an error's `status`,
    200 when it returns)."""
    tally = _Tally()
    token = _request.set(tally)
    status = 500
    try:
        yield
        status = 200
    except Exception as exc:
        status = getattr(exc, "status", 500)
        raise
    finally:
        _request.reset(token)
        _record(f"/inference.GRPCInferenceService/{name}", "gRPC", "grpc", status, tally)


class RequestMetrics:
    """ASGI middleware: one requests sample per HTTP request, plus images and rejections.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware: no extra task per request.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees when the app raises before answering
        tally = _Tally()
        token = _request.set(tally)

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _request.reset(token)
            self._record(scope, status, tally)

    @staticmethod
    def _record(scope, status: int, tally: _Tally) -> None:
        # The matched route's template (bounded cardinality), set on the scope by the router.
        route = getattr(scope.get("route"), "path", "unmatched")
        content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        body_format = FORMATS.get(content_type.decode("latin-1"), "other" if content_type else "none")
        _record(route, scope["method"], body_format, status, tally)


class ClassifierMetrics:
    """The classifier's view: images per forward pass and the model version it serves."""

    def __init__(self, model_version: str) -> None:
        self.batch_images = Histogram(
            "mnist_serve_batch_images",
            description="Images per forward pass of the classifier (all requests of a batch together).",
            boundaries=BATCH_BUCKETS,
            tag_keys=("model_version",),
        )
        self.batch_images.set_default_tags({"model_version": model_version})
        self.info = Gauge(
            "mnist_serve_model_info",
            description="1 for the model version each classifier replica serves.",
            tag_keys=("model_version",),
        )
        self.info.set_default_tags({"model_version": model_version})
        self.refresh()

    def observe_batch(self, images: int) -> None:
        self.batch_images.observe(images)

    def refresh(self) -> None:
        """Re-set the gauges: Ray's metrics agent drops a gauge not set for two export intervals
        (ray/_private/telemetry/open_telemetry_metric_recorder.py), so Serve re-sets its own every
        10 s; the classifier's health check (every 10 s) calls this."""
        self.info.set(1)
