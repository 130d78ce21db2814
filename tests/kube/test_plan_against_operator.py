"""`make rollout-plan` checked against what the real operator does, one change at a time on top of
the previous one: where the plan and the operator disagree, the plan is wrong.

The operator's rules cited here are ray-operator/controllers/ray/rayservice_controller.go at
KubeRay v1.5.0, the operator `make kube-up` builds."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client

from clusterkit import helmchart, rollout_plan
from clusterkit.kube import release
from clusterkit.poll import wait_for

# ServiceDefaultRequeueDuration: every reconcile of a RayService asks to run again this much later.
REQUEUE_S = 2
# The operator reports the generation it has read (status.observedGeneration, calculateStatus) at the
# end of the first reconcile that sees it, which the spec change itself triggers: 15 requeue periods
# leave room for reconciles slowed by dashboard calls on a busy 2-core node.
OBSERVE_TIMEOUT_S = 15 * REQUEUE_S
# wait_switched's poll interval: it may see a switch this late, so an old cluster may seem to outlive
# the switch by this much less than it did.
SWITCH_POLL_S = 3
# The deletion delay the "deletion delay only" step sets, against the chart's default 60 s
# (values.yaml upgrade.clusterDeletionDelaySeconds): short, so the new-cluster steps after it can
# tell which one the operator applied.
DELETION_DELAY_S = 10
# How late after its delay the operator may delete an old cluster: it schedules the deletion in the
# first reconcile after the switch and deletes in the first one after the delay (cleanUpRayClusterInstance),
# two requeue periods plus the reconciles' own time; 30 s is generous on a busy node and still ends
# before the 60 s default, which an operator ignoring the change would have applied.
DELETION_LATE_S = 30
GROUPS = yaml.safe_load(release.VALUES.read_text())["workerGroups"]


def groups(extra: bool = False, **changes) -> str:
    """workerGroups of the CI values with `changes` in the first group, and a small group appended
    if `extra` (helm replaces a list whole)."""
    out = [copy.deepcopy(GROUPS[0]) | changes]
    if extra:
        small = {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
        out.append(copy.deepcopy(GROUPS[0]) | {"name": "extra", "maxReplicas": 1, "resources": small})
    return json.dumps(out)


TOLERATION = [{"key": "example.com/maintenance", "operator": "Exists", "effect": "NoSchedule"}]
# A Ray environment variable nothing reads: a change to every pod template, so to the cluster hash.
PROBE_ENV = json.dumps([{"name": "MNIST_SERVE_PLAN_PROBE", "value": "1"}])
# (what changes, the values on top of the previous step, a bumped chart version or None)
STEPS = [
    ("serve config (model.version)", {"model.version": '"7"'}, None),
    # The RayService changes, the running cluster does not: the operator reads the delay only when it
    # schedules an old cluster's deletion (cleanUpRayClusterInstance), checked at the new-cluster
    # steps below.
    ("deletion delay only", {"upgrade.clusterDeletionDelaySeconds": str(DELETION_DELAY_S)}, None),
    ("maxReplicas", {"workerGroups": groups(maxReplicas=2)}, None),
    ("worker count", {"workerGroups": groups(replicas=2, maxReplicas=2)}, None),
    # Back to one worker (left out of the hash too): two clusters must fit on 2 CPUs at the switches.
    ("tolerations", {"workerGroups": groups(maxReplicas=2, tolerations=TOLERATION)}, None),
    (
        "appended worker group",
        {"workerGroups": groups(maxReplicas=2, tolerations=TOLERATION, extra=True)},
        None,
    ),
    ("chart version bump", {}, "0.1.1"),
    ("image tag", {"image.tag": '"0.1.1-ray2.60.0-cpu"'}, "0.1.1"),
    # upgradeStrategy None with a change to the cluster hash: no new cluster and the running one left
    # as it is (shouldPrepareNewCluster returns isZeroDowntimeUpgradeEnabled, false for None;
    # shouldUpdateCluster updates only for appended groups), ...
    ("upgradeStrategy None + a Ray env var", {"upgrade.strategy": '"None"', "env": PROBE_ENV}, None),
    # ... while a serve config change still reaches the running cluster (Reconcile reconciles the
    # active cluster's serve applications when shouldPrepareNewCluster is false).
    ("serve config under None", {"model.version": '"8"'}, None),
    # Back to what runs while still under None: leaving None with the env var held back would start
    # a new cluster, which the plan (FROM against TO) cannot see and only warns about.
    ("Ray env var removed under None", {"env": "[]"}, None),
    ("upgradeStrategy back to NewCluster", {"upgrade.strategy": '"NewCluster"'}, None),
]


def chart(version: str | None, tmp: Path) -> Path:
    if version is None:
        return helmchart.CHART
    copied = tmp / f"chart-{version}"
    if not copied.exists():
        shutil.copytree(helmchart.CHART, copied)
        meta = yaml.safe_load((copied / "Chart.yaml").read_text()) | {"version": version}
        (copied / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copied


def raycluster(api, name: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        "ray.io", "v1", release.NAMESPACE, "rayclusters", name
    )


def provisioned(cluster: dict) -> dict | None:
    """Its RayClusterProvisioned condition once true: all its pods were ready for the first time."""
    conditions = cluster.get("status", {}).get("conditions", [])
    true = [c for c in conditions if c["type"] == "RayClusterProvisioned" and c["status"] == "True"]
    return true[0] if true else None


def creation_s(api, name: str) -> float:
    """How long the operator took to bring RayCluster `name` up: from its creation to
    RayClusterProvisioned (the operator's own kuberay_cluster_provisioned_duration_seconds,
    raycluster_controller.go). Right after a switch the condition may not be set yet: this waits
    for it first."""
    wait_for(f"RayCluster {name} provisioned", lambda: provisioned(raycluster(api, name)), 300)
    cluster = raycluster(api, name)
    started = datetime.fromisoformat(cluster["metadata"]["creationTimestamp"])
    return (datetime.fromisoformat(provisioned(cluster)["lastTransitionTime"]) - started).total_seconds()


def snapshot(api) -> dict:
    """The RayService's generation, the active cluster, its RayCluster and the serve config its
    head runs."""
    active, _ = release.clusters()
    apps = requests.get(f"http://{release.head_ip()}:8265/api/serve/applications/", timeout=10).json()
    return {
        "generation": release.rayservice()["metadata"]["generation"],
        "active": active,
        "raycluster": raycluster(api, active),
        "serve": apps["applications"]["mnist"]["deployed_app_config"],
    }


def wait_observed() -> None:
    """Until the operator has read the RayService's current spec (and so decided on a new cluster)."""
    wait_for("the operator reading the new spec", release.observed, OBSERVE_TIMEOUT_S, REQUEUE_S)


def new_cluster_within(before: dict, seconds: float) -> bool:
    """Whether the operator starts a new cluster within `seconds`: one pending, or already active."""
    try:
        wait_for("a new cluster", lambda: release.clusters() != (before["active"], ""), seconds, REQUEUE_S)
    except TimeoutError:
        return False
    return True


def observe(api, before: dict, settle_s: float) -> str:
    """What the operator did after an upgrade, in the plan's terms: new-cluster, groups-added,
    in-place, no-effect (it read a changed RayService and left the cluster as it was) or nothing
    (the RayService's spec did not change: same generation)."""
    wait_observed()
    if new_cluster_within(before, settle_s):
        return rollout_plan.NEW_CLUSTER
    after = snapshot(api)
    old, new = before["raycluster"], after["raycluster"]
    if new["metadata"]["generation"] != old["metadata"]["generation"]:
        added = len(new["spec"]["workerGroupSpecs"]) > len(old["spec"]["workerGroupSpecs"])
        return rollout_plan.GROUPS_ADDED if added else "RayCluster updated in place"
    if after["serve"] != before["serve"]:
        return rollout_plan.IN_PLACE
    return rollout_plan.NO_EFFECT if after["generation"] != before["generation"] else rollout_plan.NOTHING


def wait_switched() -> None:
    wait_for("the new cluster taking the traffic", lambda: not release.clusters()[1], 900, SWITCH_POLL_S)


def old_cluster_outlived(old: str) -> float:
    """Seconds the operator kept RayCluster `old` after the new one took the traffic."""
    wait_switched()
    return wait_for(f"the old cluster {old} deleted", lambda: old not in release.ray_clusters(), 300)


# Each of the 12 steps waits a requeue period plus a cluster's creation (about 50 s on the 2-core
# kube-up node), and each new cluster (two on 1.5, which hashes tolerations; one on 1.7) takes up
# to a few minutes to take the traffic: more than the suite's default 900 s.
@pytest.mark.timeout(1800)
def test_rollout_plan_against_the_operator(api, tmp_path, report):
    version = release.operator_version()
    release.tag_image("0.1.1-ray2.60.0-cpu")
    # From the CI values as they are (an earlier test may have changed the release).
    current: dict[str, str] = {}
    release.install(current)
    wait_observed()
    wait_switched()
    # Settled: a requeue period after the operator has read a change, plus as long as a cluster takes
    # to come up here. Whatever it started by then (an added group's pods, a new cluster) has shown:
    # a new cluster stays pending until its applications run, so it cannot come and go unseen.
    built = creation_s(api, release.clusters()[0])
    settle_s = REQUEUE_S + built
    old, old_chart = helmchart.render(release.VALUES, sets=release.sets(current)), None
    rows, disagreements, deletions = [], [], []
    for what, change, chart_version in STEPS:
        extra = current | change
        bumped = chart_version or old_chart
        new = helmchart.render(release.VALUES, sets=release.sets(extra), chart=chart(bumped, tmp_path))
        predicted = rollout_plan.plan(old, new, operator=version).action
        before = snapshot(api)
        release.install(extra, chart=chart(bumped, tmp_path))
        did = observe(api, before, settle_s)
        if did == rollout_plan.NEW_CLUSTER:
            deletions.append((what, old_cluster_outlived(before["active"])))
        rows.append(f"  {what:<38} plan: {predicted:<13} operator {version}: {did}")
        if did != predicted:
            disagreements.append(what)
        old, current, old_chart = new, extra, bumped
    gone = [f"  {what}: old cluster deleted {s:.0f} s after the switch" for what, s in deletions]
    report(
        f"kube: rollout-plan against the operator (settled {settle_s:.0f} s after it read each change; "
        f"a cluster came up in {built:.0f} s):\n" + "\n".join(rows + gone)
    )
    assert not disagreements, "\n".join(rows)
    # Every new cluster (the image tag's at least, on any operator) comes after the deletion delay
    # step: the operator deletes the old one after the delay the RayService has at the switch, not
    # the 60 s it had when that old cluster started.
    assert deletions, "no step started a new cluster: the deletion delay went unchecked"
    for what, outlived in deletions:
        assert DELETION_DELAY_S - SWITCH_POLL_S <= outlived <= DELETION_DELAY_S + DELETION_LATE_S, (
            what,
            outlived,
        )
