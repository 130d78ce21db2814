"""The HTTP API and the ingress deployment: one FastAPI app, one router per protocol.

Routes (app/mnist_serve/protocol/):
  POST /                         the public tutorial's contract (tutorial.py)
  POST /predict                  JSON, raw uint8 bytes or PNG (predict.py)
  GET  /v2, /v2/...              the Open Inference Protocol REST API (oip_rest.py)
  GET  /health, /docs            readiness and the OpenAPI UI
The same deployment serves OIP gRPC (oip_grpc.py) through Ray Serve's gRPC ingress.
"""

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from mnist_serve import __version__, metrics, openapi
from mnist_serve.body_limit import BodyLimit
from mnist_serve.config import Batching, Limits
from mnist_serve.decoding import InputError
from mnist_serve.deployments import Composed, Fused
from mnist_serve.protocol import oip_rest, predict, tutorial
from mnist_serve.protocol.dataplane import DataPlane, dataplane
from mnist_serve.protocol.oip_grpc import GRPCInferenceService
from mnist_serve.schemas import Health


def _oip(request: Request) -> bool:
    return request.url.path == "/v2" or request.url.path.startswith("/v2/")


def _error(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    # The OIP spec names the field "error"; FastAPI's convention is "detail".
    if status in (429, 503):
        headers = {**(headers or {}), "Retry-After": "1"}
    return JSONResponse(
        {"error" if _oip(request) else "detail": message}, status_code=status, headers=headers
    )


async def _input_error(request: Request, exc: InputError) -> JSONResponse:
    return _error(request, exc.status, str(exc))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Unknown routes and methods: OIP's format under /v2, FastAPI's elsewhere."""
    return _error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    if _oip(request):
        return _error(request, 400, "; ".join(_describe(e) for e in exc.errors()))
    # A body that is not UTF-8 comes back as bytes in the error's `input`.
    detail = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    return JSONResponse({"detail": detail}, status_code=422)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"])
    got = repr(error.get("input"))
    return f"{location}: {error['msg']} (got {got[:60] + '...' if len(got) > 60 else got})"


async def health(request: Request) -> JSONResponse:
    """Ready once the classifier has loaded its model and answers."""
    try:
        version = await dataplane(request).model_version()
    except Exception as exc:  # any failure to reach the model means not ready
        body = Health(status="unavailable", detail=f"{type(exc).__name__}: {exc}")
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ok", model_version=version).model_dump())


def create_app(plane: DataPlane | None = None) -> FastAPI:
    """The API over a data plane (None: only to render the OpenAPI document)."""
    app = FastAPI(
        title="mnist-serve",
        description="Handwritten digit classification with Ray Serve.",
        version=__version__,
    )
    app.state.dataplane = plane
    limits = plane.limits if plane else Limits()
    app.state.max_body_bytes = limits.max_body_bytes
    app.add_middleware(BodyLimit)
    # Outermost, so that it also counts what BodyLimit refuses.
    app.add_middleware(metrics.RequestMetrics)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_api_route("/health", health, response_model=Health, responses={503: {"model": Health}})
    app.include_router(tutorial.router)
    app.include_router(predict.router)
    app.include_router(oip_rest.router)
    openapi.document(app, limits)
    return app


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, user_config=Batching().model_dump())
# The app is built per replica (__serve_build_asgi_app__, Ray >= 2.55), so its routes reach this
# replica's data plane through app.state (a module-level app is copied when the class is pickled).
@serve.ingress()
class Ingress(GRPCInferenceService):
    """Decodes requests of every protocol and sends them through the one data plane."""

    def __init__(self, model: Composed | Fused, limits: Limits) -> None:
        # Fused: the model loads here, in the replica, not where the app is built.
        self.dataplane = DataPlane(model.start(), limits)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.dataplane)

    def reconfigure(self, user_config: dict) -> None:
        self.dataplane.reconfigure(Batching.model_validate(user_config))

    def check_health(self) -> None:
        """Fused: Ray restarts a replica whose model can no longer run a forward pass (and the
        check keeps the model-version gauge alive)."""
        self.dataplane.model.check_health()
