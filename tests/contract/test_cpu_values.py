"""Scenarios 1, 5 and 6 on the CPU values (what kind and CI install): the service comes up and
answers correctly; a GitOps change rolls out in place under load; a broken config is reported
while the running version keeps serving."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from clusterkit import kuberay
from clusterkit.helmchart import CI_VALUES
from clusterkit.load import failed, summary
from mnist_serve.config import MODEL_DEPLOYMENT

KIND = CI_VALUES / "kind-values.yaml"


@pytest.fixture(scope="module")
def run(bring_up):
    with bring_up(KIND) as run:
        yield run


def test_all_applications_running_and_real_digits_classified(run, mnist_test):
    apps = run.cluster.details()["applications"]
    assert {name: app["status"] for name, app in apps.items()} == {"mnist": "RUNNING"}
    correct = 0
    for start in range(0, 2000, 100):
        response = run.predict(mnist_test.images[start : start + 100])
        assert response.status_code == 200, response.text
        correct += int(np.sum(np.array(response.json()["labels"]) == mnist_test.labels[start : start + 100]))
    assert correct / 2000 >= 0.98


def test_replicas_run_on_the_worker_not_the_head(run):
    head, worker = run.cluster.node_id("head"), run.cluster.node_id("cpu-0")
    placed = run.placement()
    assert {node for nodes in placed.values() for node in nodes} == {worker}
    assert head not in {node for nodes in placed.values() for node in nodes}
    # The head runs no replicas because the chart gives it no CPUs, as KubeRay starts it.
    (head_node,) = [n for n in run.cluster.alive_nodes() if n["is_head_node"]]
    assert "CPU" not in head_node["resources_total"]


BROKEN = [
    (
        "bad import path",
        lambda app: app.update(import_path="mnist_serve.nowhere:build_app"),
        "mnist_serve.nowhere",
    ),
    ("bad args", lambda app: app["args"]["limits"].update(max_images=0), "max_images"),
]


@pytest.mark.parametrize(("break_it", "error"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_config_is_reported_and_the_running_version_keeps_serving(
    run, mnist_test, report, break_it, error
):
    config = kuberay.serve_config(run.rayservice)
    good = run.predict(mnist_test.images[:10]).json()["labels"]
    (app,) = config["applications"]
    break_it(app)
    started = time.time()
    with pytest.raises(RuntimeError, match="failed to deploy") as refused:
        run.deploy(config)
    message = run.cluster.details()["applications"]["mnist"]["message"]
    assert error in message and error in str(refused.value)
    line = next(line for line in message.splitlines() if error in line).strip()
    report(f"broken config ({error}): DEPLOY_FAILED after {time.time() - started:.1f} s: {line[:120]}")
    # The previous version still answers, with the same labels.
    response = run.predict(mnist_test.images[:10])
    assert response.status_code == 200 and response.json()["labels"] == good
    assert response.headers["x-model-version"] == "1"
    run.deploy(kuberay.serve_config(run.rayservice))


def test_gitops_rollout_in_place_under_load(run, rollout_under_load, report, topology):
    """A values change that only touches the serve config (batch size, replica count, model
    version) is applied the way KubeRay applies it: one more PUT, under load, nothing lost."""
    change = {
        f"serve.deployments.{MODEL_DEPLOYMENT[topology]}.user_config.max_batch_size": "4",
        "serve.deployments.Ingress.num_replicas": "3",
        "model.version": '"2"',
    }
    before = run.rayservice
    after = run.rendered(change)
    # Only serveConfigV2 differs: KubeRay updates in place, no new cluster.
    assert after["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    assert after["spec"]["serveConfigV2"] != before["spec"]["serveConfigV2"]

    load, started, rolled, late = rollout_under_load(run, after)
    outcomes = load.between()
    report(
        f"rollout in place: RUNNING {rolled - started:.1f} s after the PUT; under load: {summary(outcomes)}"
    )
    assert failed(outcomes) == []
    # The new config is live: version, batch bound and replica count.
    assert {o.model_version for o in late} == {"2"}
    assert max(o.batch_size for o in late) <= 4
    assert len(run.cluster.replicas()["Ingress"]) == 3
    metadata = requests.get(f"{run.cluster.serve_url}/v2/models/mnist", timeout=10).json()
    assert metadata["versions"] == ["2"]
