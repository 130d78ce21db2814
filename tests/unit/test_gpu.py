"""On a GPU the classifier gives the CPU's answers. Needs CUDA: skipped (with its reason) elsewhere;
on CPU-only machines the serve tests cover the same contract on the CPU path."""

import pytest
import torch

from clusterkit.localray import WEIGHTS
from mnist_serve.preprocessing import to_model_input
from mnist_serve.weights import load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none here")


def test_cuda_predictions_match_cpu(mnist_test):
    model = load_model(str(WEIGHTS))
    batch = to_model_input(mnist_test.images[:1000])
    with torch.inference_mode():
        on_cpu = model(batch)
        on_gpu = model.to("cuda")(batch.to("cuda")).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-3)
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).float().mean() >= 0.999
