"""Scenario 2, the GPU values with declared GPUs: four Classifier replicas at 0.25 GPU pack onto
the 1-GPU node; a fifth stays pending and Serve says why. (No GPU here: `--num-gpus` comes from
the pod's nvidia.com/gpu limit, as KubeRay derives it, and Ray's GPU accounting is logical.)"""

from __future__ import annotations

import pytest

from clusterkit import kuberay
from clusterkit.helmchart import CI_VALUES
from clusterkit.poll import wait_for

GPU_VALUES = CI_VALUES / "gpu-fractional-values.yaml"
# Serve reports replicas it cannot place after 30 s by default; 5 s keeps the test short.
QUICK_WARNINGS = {"RAY_SERVE_SLOW_STARTUP_WARNING_S": "5", "RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S": "5"}
pytestmark = pytest.mark.composed("the GPU pool holds Classifier replicas; fused is for CPU-only clusters")


@pytest.fixture(scope="module")
def run(bring_up):
    with bring_up(GPU_VALUES, env=QUICK_WARNINGS) as run:
        yield run


def test_four_classifiers_share_the_one_gpu_node(run, mnist_test):
    (gpu_node,) = [n for n in run.cluster.alive_nodes() if n["resources_total"].get("GPU")]
    assert gpu_node["resources_total"]["GPU"] == 1
    assert gpu_node["labels"]["mnist-serve/pool"] == "gpu"
    assert run.cluster.node_id("gpu-0") == gpu_node["node_id"]
    classifiers = run.cluster.actors("ServeReplica:mnist:Classifier")
    assert len(classifiers) == 4
    for actor in classifiers:
        assert actor["node_id"] == gpu_node["node_id"]
        assert actor["required_resources"]["GPU"] == 0.25
    response = run.predict(mnist_test.images[:100])
    assert response.status_code == 200
    assert sum(a == b for a, b in zip(response.json()["labels"], mnist_test.labels[:100], strict=True)) >= 97


def test_one_replica_more_than_fits_stays_pending_with_the_reason(run, mnist_test, report):
    autoscaling = "serve.deployments.Classifier.autoscaling_config"
    five = run.rendered({f"{autoscaling}.min_replicas": "5", f"{autoscaling}.initial_replicas": "5"})
    run.put(kuberay.serve_config(five))
    pending = lambda: "Resources required" in classifier_message(run)  # noqa: E731
    wait_for(lambda: f"a pending reason (status message: {classifier_message(run)!r})", pending, 90)
    message = classifier_message(run)
    report(f"gpu values, a 5th Classifier replica: pending; {message[message.index('Resources required') :]}")
    assert "1 replicas that have taken more than 5s to be scheduled" in message
    assert '"GPU": 0.25' in message
    assert run.cluster.details()["applications"]["mnist"]["status"] != "RUNNING"
    assert len(run.cluster.actors("ServeReplica:mnist:Classifier")) == 4
    # The four that fit keep serving.
    assert run.predict(mnist_test.images[:10]).status_code == 200


def classifier_message(run) -> str:
    return run.cluster.details()["applications"]["mnist"]["deployments"]["Classifier"]["message"]
