"""The baseline a user would otherwise pick: the same model behind one FastAPI process.

    uvicorn --app-dir bench plain_fastapi:app

Same decoding and preprocessing code as the service, no Ray, no batching,
one torch thread: what one uvicorn worker does on one core.
"""

import os

import torch
from fastapi import FastAPI, Request

from mnist_serve import decoding
from mnist_serve.config import Limits
from mnist_serve.preprocessing import to_model_input
from mnist_serve.weights import load_model

torch.set_num_threads(1)
LIMITS = Limits()
MODEL = load_model(os.environ.get("MNIST_WEIGHTS", "artifacts/model/mnist_cnn.pt"))
app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> dict:
    body = await request.body()
    if request.headers.get("content-type") == "application/octet-stream":
        pixels = decoding.from_raw_bytes(body, LIMITS)
    else:
        pixels = decoding.from_nested(decoding.parse_json(body)["image"], LIMITS)
    with torch.inference_mode():
        log_probs = MODEL(to_model_input(pixels))
    return {"labels": log_probs.argmax(1).tolist(), "probabilities": log_probs.exp().tolist()}
