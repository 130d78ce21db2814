"""POST /: the public Ray Serve PyTorch tutorial's contract, kept for its clients."""

from fastapi import APIRouter, Request, Response

from mnist_serve import decoding
from mnist_serve.protocol.dataplane import dataplane, tag
from mnist_serve.schemas import PredictRequest, TutorialResponse, errors, inline

router = APIRouter()

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                # Unknown keys are ignored. The tutorial's own client sends this object JSON-encoded
                # once more (a JSON string): accepted too, but not something JSON Schema can state.
                "schema": {**inline(PredictRequest.model_json_schema()), "additionalProperties": True}
            }
        },
    }
}


@router.post(
    "/",
    response_model=TutorialResponse,
    summary="The Ray Serve tutorial's contract",
    responses=errors(400, 413, 422, 503),
    openapi_extra=_BODY,
)
async def tutorial(request: Request, response: Response) -> TutorialResponse:
    """Body: `{"image": [...]}`, plain or as a JSON string holding it (the tutorial's client)."""
    plane = dataplane(request)
    pixels = decoding.from_tutorial_body(await request.body(), plane.limits)
    prediction = await plane.classify(pixels)
    tag(response, prediction)
    return TutorialResponse(
        predicted_label=prediction.log_probs.argmax(1).tolist(), logits=prediction.log_probs.tolist()
    )
