"""`make rollout-plan` on a table of changes: what KubeRay will do with each, by the operator's
rules: the cluster hash of ray-operator/controllers/ray/utils/util.go
(GenerateHashWithoutReplicasAndWorkersToDelete) and shouldUpdateCluster in rayservice_controller.go."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterkit.helmchart import CI_VALUES, REPO, render
from clusterkit.rollout_plan import (
    GROUPS_ADDED,
    IN_PLACE,
    INCREMENTAL,
    NEW_CLUSTER,
    NO_EFFECT,
    NOTHING,
    plan,
)

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
    # Read only when the operator next acts (cleanUpRayClusterInstance, shouldPrepareNewCluster): the
    # RayService changes, the running cluster does not.
    (
        "deletion delay only",
        {"upgrade.clusterDeletionDelaySeconds": "120"},
        NO_EFFECT,
        "rayClusterDeletionDelaySeconds: 60 -> 120",
    ),
    (
        "upgrade strategy only",
        {"upgrade.strategy": '"None"'},
        NO_EFFECT,
        'upgradeStrategy.type: "NewCluster" -> "None"',
    ),
    # updateHeadPodServeLabel relabels the running head at every reconcile.
    (
        "head out of the serve Service",
        {"ha.excludeHeadFromServeService": "true"},
        IN_PLACE,
        "excludeHeadPodFromServeSvc: (none) -> true",
    ),
]


@pytest.mark.parametrize(("change", "action", "named"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_the_plan_says_what_kuberay_will_do(change, action, named):
    result = plan(render(KIND), render(KIND, sets=change))
    assert result.action == action
    if named:
        assert named in result.describe()


def workers(replicas: int = 1, max_replicas: int = 2, **extra) -> dict:
    group = {
        "name": "cpu",
        "replicas": replicas,
        "minReplicas": 1,
        "maxReplicas": max_replicas,
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    } | extra
    return group


def with_groups(*groups: dict) -> dict[str, str]:
    return {"workerGroups": json.dumps(list(groups))}


TOLERATION = [{"key": "dedicated", "operator": "Equal", "value": "ray", "effect": "NoSchedule"}]

# Edits KubeRay leaves out of its hash: the running cluster is not updated at all.
IGNORED = [
    ("replicas", workers(replicas=2), "workerGroupSpecs[cpu].replicas: 1 -> 2"),
    ("maxReplicas", workers(max_replicas=3), "workerGroupSpecs[cpu].maxReplicas: 2 -> 3"),
    ("tolerations", workers(tolerations=TOLERATION), "workerGroupSpecs[cpu].template.spec.tolerations"),
]


@pytest.mark.parametrize(("group", "named"), [c[1:] for c in IGNORED], ids=[c[0] for c in IGNORED])
def test_edits_outside_the_hash_do_nothing_until_the_next_new_cluster(group, named):
    result = plan(render(KIND, sets=with_groups(workers())), render(KIND, sets=with_groups(group)))
    assert result.action == NO_EFFECT
    text = result.describe()
    assert "No effect on the running cluster until the next new cluster" in text and named in text


def test_kuberay_1_5_hashes_tolerations():
    """KubeRay 1.5's hash (rayservice_controller.go) keeps tolerations: a new cluster there."""
    before = render(KIND, sets=with_groups(workers()))
    after = render(KIND, sets=with_groups(workers(tolerations=TOLERATION)))
    assert plan(before, after, operator="1.5.0").action == NEW_CLUSTER


def test_a_worker_group_appended_at_the_end_is_added_in_place():
    before = render(KIND, sets=with_groups(workers()))
    after = render(KIND, sets=with_groups(workers(), workers(name="big", maxReplicas=1)))
    result = plan(before, after)
    assert result.action == GROUPS_ADDED
    assert "add the new worker groups to the running cluster in place" in result.describe()
    inserted = render(KIND, sets=with_groups(workers(name="big", maxReplicas=1), workers()))
    assert plan(before, inserted).action == NEW_CLUSTER


def test_a_new_cluster_warns_about_the_doubled_resources():
    text = plan(render(KIND), render(KIND, sets={"image.tag": '"0.2.0-ray2.60.0-cpu"'})).describe()
    # Old and new side by side: head (100m, 1Gi) and one worker (250m, 2Gi), twice.
    assert "WARNING: old and new clusters run side by side until traffic moves: 0.7 CPU, 6 GiB memory" in text


NONE = {"upgrade.strategy": '"None"'}
IMAGE = {"image.tag": '"0.2.0-ray2.60.0-cpu"'}


def test_upgrade_strategy_none_holds_a_cluster_change_back():
    """Under None the operator starts no cluster and leaves the running one as it is
    (shouldPrepareNewCluster), yet still PUTs a changed serve config to it."""
    held = plan(render(KIND, sets=NONE), render(KIND, sets=NONE | IMAGE))
    assert held.action == NO_EFFECT
    text = held.describe()
    assert "Changed in rayClusterConfig, NOT rolled out: upgradeStrategy is None" in text
    assert "WARNING" not in text
    with_serve = plan(render(KIND, sets=NONE), render(KIND, sets=NONE | IMAGE | {"model.version": '"2"'}))
    assert with_serve.action == IN_PLACE and "NOT rolled out" in with_serve.describe()


def test_upgrade_strategy_none_still_adds_appended_groups():
    """shouldUpdateCluster does not read the strategy: groups appended at the end are added."""
    before = render(KIND, sets=NONE | with_groups(workers()))
    after = render(KIND, sets=NONE | with_groups(workers(), workers(name="big", maxReplicas=1)))
    assert plan(before, after).action == GROUPS_ADDED


def test_leaving_upgrade_strategy_none_warns_that_a_held_change_may_roll_out():
    text = plan(render(KIND, sets=NONE | IMAGE), render(KIND, sets=IMAGE)).describe()
    assert "NOTE: FROM has upgradeStrategy None" in text
    assert "NOTE" not in plan(render(KIND), render(KIND, sets=NONE)).describe()


INCREMENTAL_VALUES = CI_VALUES / "incremental-values.yaml"


@pytest.mark.parametrize(
    ("options", "steps"),
    [
        (
            # Worked out by hand from reconcileServeTargetCapacity and calculateTrafficRoutedPercent
            # (ray-operator/controllers/ray/rayservice_controller.go, v1.5.0 and v1.7.0).
            {},  # incremental-values.yaml: step 25, surge 50, interval 20
            [
                "new cluster's target_capacity: 50%",
                "traffic to the new cluster: 25%",
                "traffic to the new cluster: 50%, 20 s after the last",
                "old cluster's target_capacity: 50%",
                "new cluster's target_capacity: 100%",
                "traffic to the new cluster: 75%, 20 s after the last",
                "traffic to the new cluster: 100%, 20 s after the last",
                "old cluster's target_capacity: 0%",
                "4 traffic steps: at least 60 s",
            ],
        ),
        (
            {"upgrade.incremental.stepSizePercent": "40", "upgrade.incremental.maxSurgePercent": "100"},
            [
                "new cluster's target_capacity: 100%",
                "traffic to the new cluster: 40%",
                "traffic to the new cluster: 80%, 20 s after the last",
                "traffic to the new cluster: 100%, 20 s after the last",
                "old cluster's target_capacity: 0%",
                "3 traffic steps: at least 40 s",
            ],
        ),
    ],
    ids=["surge 50, step 25", "surge 100, step 40"],
)
def test_incremental_upgrade_lists_kuberays_steps(options, steps):
    """A cluster change under NewClusterWithIncrementalUpgrade, each capacity and traffic step in
    KubeRay's order; a serve-only change stays in place."""
    before = render(INCREMENTAL_VALUES, sets=options)
    rolled = plan(before, render(INCREMENTAL_VALUES, sets=options | IMAGE))
    assert rolled.action == INCREMENTAL
    lines = rolled.describe().splitlines()
    start = lines.index(
        "KubeRay will start a new Ray cluster and move traffic to it in steps through its Gateway "
        "(NewClusterWithIncrementalUpgrade), then delete the old one:"
    )
    expected = [f"{n}. {step}" for n, step in enumerate(steps[:-1], 1)] + steps[-1:]
    listed = [line.strip() for line in lines[start + 1 : start + 1 + len(expected)]]
    assert [line[: len(want)] for line, want in zip(listed, expected, strict=True)] == expected, listed
    assert "WARNING" not in rolled.describe()
    serve_only = plan(before, render(INCREMENTAL_VALUES, sets=options | {"model.version": '"2"'}))
    assert serve_only.action == IN_PLACE


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


def test_a_refused_values_file_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("upgrade:\n  strategy: BlueGreen\n")
    result = subprocess.run(
        [sys.executable, "-m", "clusterkit.rollout_plan", str(KIND), str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "the chart refuses these values" in result.stderr and "upgrade" in result.stderr
    assert "Traceback" not in result.stderr
