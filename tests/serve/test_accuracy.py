"""Every input format classifies the real MNIST test set at ≥ 99%, end to end."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from mnist_serve import client


def classify_all(base_url: str, fmt: str, images: np.ndarray) -> np.ndarray:
    chunk = 1 if fmt in client.SINGLE_IMAGE else 100
    session = requests.Session()

    def send(start: int) -> list[int]:
        request = client.encode(fmt, images[start : start + chunk])
        reply = session.post(base_url + request.path, data=request.body, headers=request.headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return client.labels(fmt, reply.json())

    with ThreadPoolExecutor(8) as pool:
        return np.concatenate(list(pool.map(send, range(0, len(images), chunk))))


@pytest.mark.parametrize("fmt", client.FORMATS)
def test_accuracy_on_the_whole_test_set(base_url, mnist_test, fmt):
    predicted = classify_all(base_url, fmt, mnist_test.images)
    assert len(predicted) == len(mnist_test.labels) == 10_000
    accuracy = (predicted == mnist_test.labels).mean()
    print(f"{fmt}: accuracy {accuracy:.4f}")
    assert accuracy >= 0.99


def test_png_of_any_size_is_scaled_to_28x28(base_url, mnist_test):
    """Digits drawn at 4× size (as a phone or canvas would send them) still classify."""
    images = mnist_test.images[:1000]
    session = requests.Session()

    def send(image: np.ndarray) -> int:
        big = np.kron(image, np.ones((4, 4), dtype=np.uint8))
        request = client.encode("png", big[None])
        reply = session.post(base_url + request.path, data=request.body, headers=request.headers, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()["labels"][0]

    with ThreadPoolExecutor(8) as pool:
        predicted = np.array(list(pool.map(send, images)))
    assert (predicted == mnist_test.labels[:1000]).mean() >= 0.99
