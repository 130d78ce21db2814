"""`make rollout-plan` on a table of changes: what KubeRay will do with each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterkit.helmchart import CI_VALUES, REPO, render
from clusterkit.rollout_plan import IN_PLACE, NEW_CLUSTER, NOTHING, WORKER_COUNTS, plan

KIND = CI_VALUES / "kind-values.yaml"

# (id, --set-json change on top of the kind values, action, a changed field the plan must name)
CHANGES = [
    ("nothing", {}, NOTHING, None),
    (
        "model version",
        {"model.version": '"2"'},
        IN_PLACE,
        'applications[mnist].args.model.version: "1" -> "2"',
    ),
    ("model location", {"model.uri": '"file:///models/v2/mnist_cnn.pt"'}, IN_PLACE, "args.model.uri"),
    (
        "batch size",
        {"serve.deployments.Classifier.user_config.max_batch_size": "64"},
        IN_PLACE,
        "deployments[Classifier].user_config.max_batch_size: 128 -> 64",
    ),
    (
        "replica count",
        {"serve.deployments.Ingress.num_replicas": "1"},
        IN_PLACE,
        "deployments[Ingress].num_replicas: 2 -> 1",
    ),
    (
        "autoscaling bound",
        {"serve.deployments.Classifier.autoscaling_config.max_replicas": "1"},
        IN_PLACE,
        "autoscaling_config.max_replicas: 2 -> 1",
    ),
    ("request limits", {"serve.limits.max_images": "64"}, IN_PLACE, "args.limits.max_images: 256 -> 64"),
    ("image", {"image.tag": '"0.2.0-ray2.60.0-cpu"'}, NEW_CLUSTER, "image"),
    (
        "worker resources",
        {
            "workerGroups": '[{"name": "cpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 1, '
            '"resources": {"limits": {"cpu": "2", "memory": "6Gi"}}}]'
        },
        NEW_CLUSTER,
        'resources.limits.memory: "4Gi" -> "6Gi"',
    ),
    ("Ray version", {"rayVersion": '"2.61.0"'}, NEW_CLUSTER, 'rayVersion: "2.60.0" -> "2.61.0"'),
    ("Ray environment", {"env": '[{"name": "RAY_SERVE_LOG_LEVEL", "value": "DEBUG"}]'}, NEW_CLUSTER, "env"),
    (
        "network policy only",
        {"networkPolicy.serveFrom": '[{"namespaceSelector": {}}]'},
        NOTHING,
        "NetworkPolicy/mnist-serve",
    ),
    (
        "deletion delay only",
        {"upgrade.clusterDeletionDelaySeconds": "120"},
        NOTHING,
        "rayClusterDeletionDelaySeconds: 60 -> 120",
    ),
]


@pytest.mark.parametrize(("change", "action", "named"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_the_plan_says_what_kuberay_will_do(change, action, named):
    result = plan(render(KIND), render(KIND, sets=change))
    assert result.action == action
    if named:
        assert named in result.describe()


def workers(replicas: int) -> dict[str, str]:
    group = {
        "name": "cpu",
        "replicas": replicas,
        "minReplicas": 1,
        "maxReplicas": 2,
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    }
    return {"workerGroups": json.dumps([group])}


def test_worker_counts_alone_resize_in_place():
    """What the Ray autoscaler changes (and Argo CD ignores) needs no new cluster; bounds would."""
    result = plan(render(KIND, sets=workers(1)), render(KIND, sets=workers(2)))
    assert result.action == WORKER_COUNTS
    assert "workerGroupSpecs[cpu].replicas: 1 -> 2" in result.describe()


def test_a_new_cluster_warns_about_the_doubled_resources():
    text = plan(render(KIND), render(KIND, sets={"image.tag": '"0.2.0-ray2.60.0-cpu"'})).describe()
    # Old and new side by side: head (250m, 1Gi) and one worker (500m, 2Gi), twice.
    assert "WARNING: old and new clusters run side by side until traffic moves: 1.5 CPU, 6 GiB memory" in text


def test_upgrade_strategy_none_says_the_cluster_change_will_not_roll_out():
    before = render(KIND, sets={"upgrade.strategy": '"None"'})
    after = render(KIND, sets={"upgrade.strategy": '"None"', "image.tag": '"0.2.0-ray2.60.0-cpu"'})
    text = plan(before, after).describe()
    assert "will NOT roll out the cluster change" in text and "WARNING" not in text


def test_git_refs_render_the_chart_at_that_ref():
    """The command line, with a ref on one side: HEAD's chart against this checkout's."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    result = subprocess.run(
        [sys.executable, "-m", "clusterkit.rollout_plan", head, str(KIND), "--values", str(KIND)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Rollout plan: {head} -> ")
    bogus = subprocess.run(
        [sys.executable, "-m", "clusterkit.rollout_plan", "no-such-ref", str(KIND)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bogus.returncode == 1 and "'no-such-ref': not a values file" in bogus.stderr
