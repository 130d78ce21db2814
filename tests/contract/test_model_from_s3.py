"""A model rollout from the image's file to an object in S3 (moto's S3 API server), under load:
only serveConfigV2 changes (model.uri, version, sha256), KubeRay PUTs it, nothing fails, and the
new version answers. A missing object is refused at deploy time while the old version serves."""

from __future__ import annotations

import pytest
import requests

from clusterkit import kuberay
from clusterkit.helmchart import CI_VALUES
from clusterkit.load import accuracy, failed, summary
from clusterkit.localray import WEIGHTS
from mnist_serve.weights import sha256

KIND = CI_VALUES / "kind-values.yaml"
BUCKET = "mnist-models"


@pytest.fixture(scope="module")
def run(bring_up, s3_server, tmp_path_factory):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(WEIGHTS), BUCKET, "v2/mnist_cnn.pt")
    # The pods' environment carries the S3 endpoint and credentials (nothing in values files).
    cache = {"MNIST_SERVE_MODEL_CACHE": str(tmp_path_factory.mktemp("model-cache"))}
    with bring_up(KIND, env=s3_server.env | cache) as run:
        yield run


def s3_model(run, key: str, version: str) -> dict:
    return run.rendered(
        {
            "model.uri": f'"s3://{BUCKET}/{key}"',
            "model.version": f'"{version}"',
            "model.sha256": f'"{sha256(WEIGHTS)}"',
        }
    )


def test_a_missing_object_is_refused_and_the_running_version_keeps_serving(run, mnist_test):
    with pytest.raises(RuntimeError, match="model weights not found at s3://mnist-models/v9/mnist_cnn.pt"):
        run.deploy(kuberay.serve_config(s3_model(run, "v9/mnist_cnn.pt", "9")))
    try:
        response = run.predict(mnist_test.images[:10])
        assert response.status_code == 200 and response.headers["x-model-version"] == "1"
    finally:
        run.deploy(kuberay.serve_config(run.rayservice))


def test_rollout_from_file_to_s3_under_load(run, rollout_under_load, report):
    after = s3_model(run, "v2/mnist_cnn.pt", "2")
    assert after["spec"]["rayClusterConfig"] == run.rayservice["spec"]["rayClusterConfig"]
    load, started, rolled, late = rollout_under_load(run, after)
    outcomes = load.between()
    report(f"file:// -> s3:// rollout: RUNNING {rolled - started:.1f} s after the PUT; {summary(outcomes)}")
    assert failed(outcomes) == []
    assert {o.model_version for o in late} == {"2"}
    assert accuracy(outcomes) >= 0.98
    metadata = requests.get(f"{run.cluster.serve_url}/v2/models/mnist", timeout=10).json()
    assert metadata["versions"] == ["2"]
