"""`make rollout-plan` checked against what the real operator does, one change at a time on top of
the previous one: where the plan and the operator disagree, the plan is wrong."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import requests
import yaml
from kubernetes import client

from clusterkit import helmchart, rollout_plan
from clusterkit.kube import release
from clusterkit.poll import wait_for

SETTLE_S = 45  # the operator reconciles in seconds; a change it ignores shows nothing in this time
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
# (what changes, the values on top of the previous step, a bumped chart version or None)
STEPS = [
    ("serve config (model.version)", {"model.version": '"7"'}, None),
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


UNTOUCHED = "untouched"  # what the plan's no-effect and nothing both look like on the cluster


def snapshot(api) -> dict:
    """The active cluster, its RayCluster and the serve config its head runs."""
    active, _ = release.clusters()
    raycluster = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "ray.io", "v1", release.NAMESPACE, "rayclusters", active
    )
    apps = requests.get(f"http://{release.head_ip()}:8265/api/serve/applications/", timeout=10).json()
    return {
        "active": active,
        "raycluster": raycluster,
        "serve": apps["applications"]["mnist"]["deployed_app_config"],
    }


def observe(api, before: dict) -> str:
    """What the operator did after an upgrade: new-cluster, groups-added, in-place or untouched."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        if release.clusters()[1]:
            return rollout_plan.NEW_CLUSTER
        time.sleep(2)
    after = snapshot(api)
    assert after["active"] == before["active"]
    old, new = before["raycluster"], after["raycluster"]
    if new["metadata"]["generation"] != old["metadata"]["generation"]:
        added = len(new["spec"]["workerGroupSpecs"]) > len(old["spec"]["workerGroupSpecs"])
        return rollout_plan.GROUPS_ADDED if added else "RayCluster updated in place"
    return rollout_plan.IN_PLACE if after["serve"] != before["serve"] else UNTOUCHED


def wait_switched() -> None:
    wait_for("the new cluster taking the traffic", lambda: not release.clusters()[1], 900, interval=3)


def test_rollout_plan_against_the_operator(api, tmp_path, report):
    version = release.operator_version()
    release.tag_image("0.1.1-ray2.60.0-cpu")
    # From the CI values as they are (an earlier test may have changed the release).
    current: dict[str, str] = {}
    release.install(current)
    wait_switched()
    old, old_chart = helmchart.render(release.VALUES, sets=release.sets(current)), None
    rows, disagreements = [], []
    for what, change, chart_version in STEPS:
        extra = current | change
        bumped = chart_version or old_chart
        new = helmchart.render(release.VALUES, sets=release.sets(extra), chart=chart(bumped, tmp_path))
        predicted = rollout_plan.plan(old, new, operator=version).action
        before = snapshot(api)
        release.install(extra, chart=chart(bumped, tmp_path))
        did = observe(api, before)
        if did == rollout_plan.NEW_CLUSTER:
            wait_switched()
        rows.append(f"  {what:<30} plan: {predicted:<13} operator {version}: {did}")
        if did != predicted and not (
            did == UNTOUCHED and predicted in (rollout_plan.NO_EFFECT, rollout_plan.NOTHING)
        ):
            disagreements.append(what)
        old, current, old_chart = new, extra, bumped
    report("kube: rollout-plan against the operator:\n" + "\n".join(rows))
    assert not disagreements, "\n".join(rows)
