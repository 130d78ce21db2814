"""The public Ray Serve PyTorch tutorial's client code works unchanged against POST /."""

import asyncio
import json

import aiohttp
import numpy as np
import requests


def test_tutorial_single_request(base_url):
    # As in the tutorial: random images [2, 1, 28, 28], posted with json=json.dumps(...).
    images = np.random.rand(2, 1, 28, 28).tolist()
    json_request = json.dumps({"image": images})
    response = requests.post(f"{base_url}/", json=json_request, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"predicted_label", "logits"}
    assert len(body["predicted_label"]) == 2 and all(0 <= label <= 9 for label in body["predicted_label"])
    assert np.array(body["logits"]).shape == (2, 10)
    # logits are log_softmax outputs: each row's probabilities sum to 1.
    np.testing.assert_allclose(np.exp(body["logits"]).sum(axis=1), 1.0, rtol=1e-4)


def test_tutorial_concurrent_requests_of_ten_images(base_url, mnist_test):
    """The tutorial's send_concurrent_requests(100), with real digits instead of noise."""

    async def send_request(session, url, data):
        async with session.post(url, json=data) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def send_concurrent_requests(num_requests=100):
        payloads = [
            json.dumps({"image": (mnist_test.images[i * 10 : i * 10 + 10, None] / 255).tolist()})
            for i in range(num_requests)
        ]
        async with aiohttp.ClientSession() as session:
            tasks = [send_request(session, f"{base_url}/", data) for data in payloads]
            return await asyncio.gather(*tasks)

    responses = asyncio.run(send_concurrent_requests(100))
    assert len(responses) == 100
    predicted = np.concatenate([r["predicted_label"] for r in responses])
    assert len(predicted) == 1000
    assert (predicted == mnist_test.labels[:1000]).mean() >= 0.98
