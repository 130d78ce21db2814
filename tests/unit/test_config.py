"""The application's typed arguments: bad serve-config args fail with a clear message."""

import pytest
from pydantic import ValidationError

from mnist_serve.config import AppArgs, Batching

MODEL = {"uri": "artifacts/model/mnist_cnn.pt", "version": "1"}


def test_minimal_args():
    args = AppArgs.model_validate({"model": MODEL})
    assert args.model.version == "1" and args.limits.max_images == 256


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "model\n  Field required"),
        ({"model": {"uri": "x"}}, "model.version\n  Field required"),
        ({"model": {**MODEL, "uri": ""}}, "at least 1 character"),
        ({"model": {**MODEL, "sha256": "abc"}}, "should match pattern"),
        ({"model": MODEL, "limits": {"max_images": 0}}, "greater than or equal to 1"),
        ({"model": MODEL, "unknown": 1}, "Extra inputs are not permitted"),
        ({"model": {**MODEL, "path": "x"}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_args(args, message):
    with pytest.raises(ValidationError) as caught:
        AppArgs.model_validate(args)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "user_config",
    [{"max_batch_size": 0}, {"max_batch_size": 5000}, {"batch_wait_timeout_s": -1}, {"batch_size": 8}],
)
def test_bad_batching(user_config):
    with pytest.raises(ValidationError):
        Batching.model_validate(user_config)
