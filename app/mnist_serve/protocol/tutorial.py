"""POST /: the public Ray Serve PyTorch tutorial's contract, kept for its clients."""

from fastapi import APIRouter, Request, Response

from mnist_serve import decoding
from mnist_serve.protocol.dataplane import dataplane, tag
from mnist_serve.schemas import TutorialResponse, errors

router = APIRouter()


@router.post(
    "/",
    response_model=TutorialResponse,
    summary="The Ray Serve tutorial's contract",
    responses=errors(400, 413, 422, 503),
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
