"""The HTTP API: a FastAPI ingress that composes preprocessing and the classifier.

Routes:
  POST /                         the public tutorial's contract (JSON, double-encoded or not)
  POST /predict                  JSON, raw uint8 bytes or PNG
  GET  /v2/..., POST /v2/models/mnist/infer
                                 the Open Inference Protocol (KServe v2 / Triton) REST API
  GET  /health, /docs            readiness and the OpenAPI UI
"""

import asyncio
import dataclasses

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from mnist_serve import decoding
from mnist_serve.body_limit import BodyLimit
from mnist_serve.config import Batching, Limits
from mnist_serve.decoding import InputError
from mnist_serve.deployments import Composed, Fused, Prediction, images, in_batches, split
from mnist_serve.schemas import (
    MODEL_NAME,
    OIP_INPUT,
    OIP_OUTPUTS,
    Health,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    TensorMetadata,
    TutorialResponse,
)

HEALTH_TIMEOUT_S = 5.0
VERSION_HEADER = "x-model-version"
BATCH_HEADER = "x-batch-size"

app = FastAPI(
    title="mnist-serve",
    description="Handwritten digit classification with Ray Serve.",
    version="0.1.0",
)
app.state.max_body_bytes = Limits().max_body_bytes
app.add_middleware(BodyLimit)


def _oip(request: Request) -> bool:
    return request.url.path.startswith("/v2")


def _error(request: Request, status: int, message: str) -> JSONResponse:
    # The OIP spec names the field "error"; FastAPI's convention is "detail".
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(
        {"error" if _oip(request) else "detail": message}, status_code=status, headers=headers
    )


@app.exception_handler(InputError)
async def _input_error(request: Request, exc: InputError) -> JSONResponse:
    return _error(request, exc.status, str(exc))


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    if _oip(request):
        return _error(request, 400, "; ".join(_describe(e) for e in exc.errors()))
    return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}"


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _check_model(model_name: str) -> None:
    if model_name != MODEL_NAME:
        raise InputError(f"unknown model {model_name!r}; this server serves {MODEL_NAME!r}", 404)


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": "N×784 uint8 pixels."}
            },
            "image/png": {
                "schema": {"type": "string", "format": "binary", "description": "Any size; made 28×28 gray."}
            },
        },
    }
}


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, user_config=Batching().model_dump())
@serve.ingress(app)
class Ingress:
    """Decodes requests, then sends concurrent ones to the model together.

    Gathering requests here (its own `@serve.batch`, sized in images by
    `user_config`) costs one preprocessor call and one classifier call per
    group rather than per request when the model is `Composed`: the calls
    between deployments, not the model, dominate the cost of small requests.
    `Fused`, each group is one forward pass in this replica.
    """

    def __init__(self, model: Composed | Fused, limits: Limits) -> None:
        self.model = model.start()
        self.limits = limits
        app.state.max_body_bytes = limits.max_body_bytes
        self.batching = Batching()

    def reconfigure(self, user_config: dict) -> None:
        self.batching = Batching.model_validate(user_config)
        self.batching.apply(self._pipeline)

    # Several groups in flight: the next one is preprocessed while the classifier works.
    @serve.batch(**Batching().model_dump(), max_concurrent_batches=4, batch_size_fn=images)
    async def _pipeline(self, requests: list[np.ndarray]) -> list[Prediction]:
        prediction = await self.model.predict(requests)
        return [dataclasses.replace(prediction, log_probs=p) for p in split(prediction.log_probs, requests)]

    async def _classify(self, pixels: np.ndarray, response: Response) -> Prediction:
        try:
            prediction = await in_batches(self._pipeline, pixels, self.batching.max_batch_size)
        except BackPressureError:
            raise InputError("the model is at capacity; retry shortly", 503) from None
        except RayActorError:
            # A replica died under this request (its node was lost); Serve is replacing it.
            raise InputError("a model replica was lost; retry shortly", 503) from None
        response.headers[VERSION_HEADER] = prediction.model_version
        response.headers[BATCH_HEADER] = str(prediction.batch_images)
        return prediction

    async def _model_version(self) -> str:
        return await asyncio.wait_for(self.model.model_version(), HEALTH_TIMEOUT_S)

    @app.post("/", response_model=TutorialResponse, summary="The Ray Serve tutorial's contract")
    async def tutorial(self, request: Request, response: Response) -> TutorialResponse:
        """Body: `{"image": [...]}`, plain or as a JSON string holding it (the tutorial's client)."""
        pixels = decoding.from_tutorial_body(await request.body(), self.limits)
        prediction = await self._classify(pixels, response)
        return TutorialResponse(
            predicted_label=prediction.log_probs.argmax(1).tolist(), logits=prediction.log_probs.tolist()
        )

    @app.post("/predict", response_model=PredictResponse, openapi_extra=_PREDICT_BODY)
    async def predict(self, request: Request, response: Response) -> PredictResponse:
        """Classify digits sent as JSON, raw uint8 bytes (`application/octet-stream`) or a PNG."""
        body = await request.body()
        content_type = _content_type(request)
        if content_type == "application/json":
            try:
                payload = PredictRequest.model_validate_json(body)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors(include_url=False)) from None
            pixels = decoding.from_nested(payload.image, self.limits)
        elif content_type == "application/octet-stream":
            pixels = decoding.from_raw_bytes(body, self.limits)
        elif content_type == "image/png":
            pixels = decoding.from_png(body, self.limits)
        else:
            raise InputError(
                f"unsupported content type {content_type or '(none)'!r}; "
                "use application/json, application/octet-stream or image/png",
                415,
            )
        prediction = await self._classify(pixels, response)
        return PredictResponse(
            labels=prediction.log_probs.argmax(1).tolist(),
            probabilities=np.exp(prediction.log_probs).tolist(),
            model_version=prediction.model_version,
        )

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health(self) -> JSONResponse:
        """Ready once the classifier has loaded its model and answers."""
        try:
            version = await self._model_version()
        except Exception as exc:  # any failure to reach the model means not ready
            body = Health(status="unavailable", detail=f"{type(exc).__name__}: {exc}")
            return JSONResponse(body.model_dump(), status_code=503)
        return JSONResponse(Health(status="ok", model_version=version).model_dump())

    # Open Inference Protocol (KServe v2 / Triton REST).

    @app.get("/v2/health/live")
    async def oip_live(self) -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def oip_ready(self) -> JSONResponse:
        try:
            await self._model_version()
        except Exception:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/v2/models/{model_name}", response_model=ModelMetadata)
    async def oip_metadata(self, model_name: str) -> ModelMetadata:
        _check_model(model_name)
        return ModelMetadata(
            name=MODEL_NAME,
            versions=[await self._model_version()],
            platform="pytorch",
            inputs=[
                TensorMetadata(name=OIP_INPUT, datatype="FP32", shape=[-1, 1, 28, 28]),
            ],
            outputs=[TensorMetadata(name=n, datatype=t, shape=s) for n, (t, s) in OIP_OUTPUTS.items()],
        )

    @app.get("/v2/models/{model_name}/ready")
    async def oip_model_ready(self, model_name: str) -> JSONResponse:
        _check_model(model_name)
        return await self.oip_ready()

    @app.post("/v2/models/{model_name}/infer", response_model=InferResponse)
    async def oip_infer(self, model_name: str, body: InferRequest, response: Response) -> InferResponse:
        """Inputs: one tensor named `image`, FP32 in [0, 1] or UINT8, shape [N, 1, 28, 28] or [N, 784]."""
        _check_model(model_name)
        tensor = body.inputs[0]
        if tensor.name != OIP_INPUT:
            raise InputError(f"unknown input {tensor.name!r}; the model's input is {OIP_INPUT!r}", 400)
        wanted = [o.name for o in body.outputs] if body.outputs else list(OIP_OUTPUTS)
        unknown = sorted(set(wanted) - set(OIP_OUTPUTS))
        if unknown:
            raise InputError(f"unknown outputs {unknown}; the model has {list(OIP_OUTPUTS)}", 400)
        pixels = decoding.flat_tensor(tensor.data, tensor.shape, tensor.datatype, self.limits)
        prediction = await self._classify(pixels, response)
        log_probs = prediction.log_probs
        values = {"label": log_probs.argmax(1), "probabilities": np.exp(log_probs), "logits": log_probs}
        return InferResponse(
            model_name=MODEL_NAME,
            model_version=prediction.model_version,
            id=body.id,
            outputs=[
                InferOutput(
                    name=name,
                    datatype=OIP_OUTPUTS[name][0],
                    shape=list(values[name].shape),
                    data=values[name].ravel().tolist(),
                )
                for name in wanted
            ],
        )
