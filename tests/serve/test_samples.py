"""The sample bodies of `make samples` (used by the README's curl examples) classify."""

import pytest
import requests

from mnist_serve import client


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    return client.write_samples(out, index=0), int((out / "label.txt").read_text())


@pytest.mark.parametrize("fmt", client.FORMATS)
def test_sample_body_classifies(base_url, samples, mnist_test, fmt):
    bodies, label = samples
    assert label == mnist_test.labels[0]
    request = client.encode(fmt, mnist_test.images[:1])
    reply = requests.post(base_url + request.path, data=bodies[fmt].read_bytes(), headers=request.headers)
    assert reply.status_code == 200, reply.text
    assert client.labels(fmt, reply.json()) == [label]
