"""What KubeRay will do when a RayService changes from one render of the chart to another.

    python -m clusterkit.rollout_plan FROM TO [--values k8s/envs/prod/values.yaml]
    (make rollout-plan FROM=main TO=HEAD VALUES=k8s/envs/prod/values.yaml)

FROM and TO are values files (rendered with this checkout's chart) or git refs (the chart and
VALUES as they are at that ref). The rules are KubeRay's (1.5 and 1.7):

- serveConfigV2 alone changed: applied in place, one more PUT to the running cluster.
- rayClusterConfig is compared by a hash that leaves out every worker group's replicas,
  minReplicas, maxReplicas and scaleStrategy.workersToDelete, and from 1.7 on every pod
  template's tolerations and schedulingGates (GenerateHashWithoutReplicasAndWorkersToDelete,
  ray-operator/controllers/ray/utils/util.go; in 1.5 rayservice_controller.go). When the hash is
  unchanged the running RayCluster is not updated at all: such edits do nothing until the next
  new cluster (kuberay #2331, #4568).
- Worker groups appended at the end, the rest unchanged by the hash, are added to the running
  cluster in place (shouldUpdateCluster / isClusterSpecHashEqual, rayservice_controller.go).
- Any other change starts a new cluster and moves traffic to it once all its applications are
  RUNNING (upgradeStrategy NewCluster), which needs room for both clusters. Under
  NewClusterWithIncrementalUpgrade traffic moves in steps instead, through KubeRay's Gateway: the
  new cluster's Serve target_capacity grows by maxSurgePercent, the HTTPRoute's weight follows it
  by stepSizePercent every intervalSeconds, then the old cluster's target_capacity shrinks by
  maxSurgePercent, until the new one has 100% (reconcileServeTargetCapacity,
  calculateTrafficRoutedPercent, rayservice_controller.go; the same in 1.5 and 1.7). Under None the operator
  neither starts one nor updates the running cluster, and still applies serveConfigV2 to it
  (shouldPrepareNewCluster returns isZeroDowntimeUpgradeEnabled, false for None; Reconcile then
  reconciles the active cluster's serve applications: rayservice_controller.go at v1.5.0).
- upgradeStrategy and rayClusterDeletionDelaySeconds are read only when the operator next acts: the
  strategy when the cluster hash next differs, the delay when an old cluster is first scheduled for
  deletion (cleanUpRayClusterInstance). Changing only them has no effect on the running cluster.
  excludeHeadPodFromServeSvc is applied at every reconcile (updateHeadPodServeLabel).

Outcomes: new-cluster, incremental, groups-added, in-place (serve config or the head's serve label), no-effect
(the RayService changed, the operator accepts it and the running cluster stays as it is) and
nothing (the RayService is unchanged; Helm may still change other objects).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clusterkit.helmchart import CHART, REPO, RenderError, rayservice, render
from clusterkit.kuberay import quantity, serve_config

IN_PLACE = "in-place"
NEW_CLUSTER = "new-cluster"
INCREMENTAL = "incremental"
GROUPS_ADDED = "groups-added"
NO_EFFECT = "no-effect"
NOTHING = "nothing"

# The operator version the chart targets by default (values.yaml kuberay.operatorVersion).
DEFAULT_OPERATOR = "1.7.0"
# RayService fields the operator reads only when it next acts (see above).
DEFERRED = ("upgradeStrategy", "rayClusterDeletionDelaySeconds")


@dataclass(frozen=True)
class Plan:
    action: str
    serve_changes: list[str]
    cluster_changes: list[str]
    ignored_changes: list[str]  # left out of KubeRay's hash: no effect until the next new cluster
    deferred_changes: list[str]  # upgradeStrategy, deletion delay: read when the operator next acts
    spec_changes: list[str]  # other RayService fields: applied to the running cluster at once
    other_changes: list[str]
    old_strategy: str  # FROM's upgradeStrategy: under None the running cluster may predate FROM
    both_clusters: dict[str, float]  # resources requested while old and new clusters both run
    steps: list[str]  # NewClusterWithIncrementalUpgrade: KubeRay's capacity and traffic steps, in order
    steps_time: str  # how long those steps take at least

    @property
    def held(self) -> bool:
        """A cluster change that upgradeStrategy None keeps from rolling out."""
        return bool(self.cluster_changes) and self.action not in (NEW_CLUSTER, INCREMENTAL, GROUPS_ADDED)

    def describe(self) -> str:
        lines = {
            NOTHING: ["KubeRay will do nothing: the RayService is unchanged."],
            NO_EFFECT: [
                "KubeRay will accept the change and do nothing to the running cluster: no effect now "
                "(see below for when it applies)."
            ],
            IN_PLACE: [self._in_place()],
            GROUPS_ADDED: [
                "KubeRay will add the new worker groups to the running cluster in place (appended at "
                "the end, the other groups unchanged): no new cluster."
            ],
            NEW_CLUSTER: [
                "KubeRay will start a new Ray cluster and switch traffic to it once all its applications "
                "are RUNNING, then delete the old one."
            ],
            INCREMENTAL: [
                "KubeRay will start a new Ray cluster and move traffic to it in steps through its Gateway "
                "(NewClusterWithIncrementalUpgrade), then delete the old one:",
                *(f"  {n}. {step}" for n, step in enumerate(self.steps, 1)),
                f"  {self.steps_time}",
            ],
        }[self.action]
        cluster_title = (
            "Changed in rayClusterConfig, NOT rolled out: upgradeStrategy is None, so no new cluster "
            "and the running one keeps its spec"
            if self.held
            else "Changed in rayClusterConfig"
        )
        ignored_title = (
            "Applied with the new cluster (left out of KubeRay's hash)"
            if self.action in (NEW_CLUSTER, INCREMENTAL)
            else "No effect on the running cluster until the next new cluster (left out of KubeRay's hash)"
        )
        for title, changes in (
            ("Changed in serveConfigV2", self.serve_changes),
            (cluster_title, self.cluster_changes),
            (ignored_title, self.ignored_changes),
            (
                "Read when KubeRay next acts (upgradeStrategy at the next cluster change, "
                "rayClusterDeletionDelaySeconds for the next old cluster it deletes)",
                self.deferred_changes,
            ),
            ("Changed elsewhere in the RayService, applied to the running cluster", self.spec_changes),
            ("Other objects Helm will change", self.other_changes),
        ):
            if changes:
                lines += [f"{title}:", *(f"  {change}" for change in changes)]
        if self.action == NEW_CLUSTER:
            need = ", ".join(f"{value:g} {name}" for name, value in self.both_clusters.items() if value)
            lines.append(
                f"WARNING: old and new clusters run side by side until traffic moves: {need} requested."
            )
        if self.action == INCREMENTAL:
            need = ", ".join(f"{value:g} {name}" for name, value in self.both_clusters.items() if value)
            lines.append(
                f"Old and new clusters run side by side during the steps: {need} requested with the new "
                "one at its initial size; its Serve replicas, and the workers the Ray autoscaler adds for "
                "them, follow its target_capacity while the old cluster's shrink."
            )
        if self.old_strategy == "None":
            lines.append(
                "NOTE: FROM has upgradeStrategy None, under which cluster changes do not roll out, so the "
                "running cluster may predate FROM's rayClusterConfig. KubeRay compares TO with the running "
                "cluster, not with FROM: under NewCluster any difference starts a new cluster."
            )
        return "\n".join(lines)

    def _in_place(self) -> str:
        what = []
        if self.serve_changes:
            what.append("the serve config with one PUT")
        if self.spec_changes:
            what.append("the RayService fields below at its next reconcile")
        return f"KubeRay will update the running cluster in place, no new pods: {' and '.join(what)}."


def diff(old, new, path: str = "") -> list[str]:
    """Changed leaves as 'path: old -> new'; list items keyed by name where they have one."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and _keyed(old) and _keyed(new):
        olds, news = _by_name(old), _by_name(new)
        out = []
        for key in sorted(set(olds) | set(news)):
            out += diff(olds.get(key), news.get(key), f"{path}[{key}]")
        return out
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _keyed(items: list) -> bool:
    return all(isinstance(i, dict) and ("name" in i or "groupName" in i) for i in items)


def _by_name(items: list[dict]) -> dict[str, dict]:
    return {i.get("groupName", i.get("name")): i for i in items}


def _short(value) -> str:
    text = "(none)" if value is None else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def hashed(cluster: dict, operator: str = DEFAULT_OPERATOR) -> dict:
    """rayClusterConfig as KubeRay hashes it: without the fields it leaves out."""
    spec = copy.deepcopy(cluster)
    spec.pop("suspend", None)
    spec.pop("upgradeStrategy", None)
    templates = [spec["headGroupSpec"]] if at_least(operator, "1.7.0") else []
    for group in spec.get("workerGroupSpecs", []):
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        group.get("scaleStrategy", {}).pop("workersToDelete", None)
        if at_least(operator, "1.7.0"):
            templates.append(group)
    for group in templates:
        for key in ("tolerations", "schedulingGates"):
            group["template"].get("spec", {}).pop(key, None)
    return spec


def at_least(version: str, minimum: str) -> bool:
    """Whether operator `version` ("1.7.0" or "v1.7.0") is `minimum` or later."""
    return tuple(map(int, version.lstrip("v").split("."))) >= tuple(map(int, minimum.split(".")))


def requested(service: dict) -> dict[str, float]:
    """CPU, memory (GiB) and GPUs the cluster's pods request at their current counts."""
    cluster = service["spec"]["rayClusterConfig"]
    pods = [(cluster["headGroupSpec"], 1)] + [(g, g.get("replicas", 0)) for g in cluster["workerGroupSpecs"]]
    total = {"CPU": 0.0, "GiB memory": 0.0, "GPU": 0.0}
    for group, count in pods:
        for container in group["template"]["spec"]["containers"]:
            resources = container.get("resources", {})
            requests = {**resources.get("limits", {}), **resources.get("requests", {})}
            total["CPU"] += count * quantity(requests.get("cpu", 0))
            total["GiB memory"] += count * quantity(requests.get("memory", 0)) / 2**30
            total["GPU"] += count * sum(
                quantity(v) for k, v in resources.get("limits", {}).items() if k.endswith("gpu")
            )
    return total


def plan(old: list[dict], new: list[dict], operator: str = DEFAULT_OPERATOR) -> Plan:
    before, after = rayservice(old), rayservice(new)
    serve = diff(serve_config(before), serve_config(after))
    old_cluster, new_cluster = before["spec"]["rayClusterConfig"], after["spec"]["rayClusterConfig"]
    old_hashed, new_hashed = hashed(old_cluster, operator), hashed(new_cluster, operator)
    cluster = diff(old_hashed, new_hashed)
    ignored = [change for change in diff(old_cluster, new_cluster) if change not in cluster]
    others, others_new = _others(old), _others(new)
    other = [
        f"{kind}/{name}"
        for kind, name in sorted(set(others) | set(others_new))
        if others.get((kind, name)) != others_new.get((kind, name))
    ]
    settings = [
        {k: v for k, v in svc["spec"].items() if k not in ("serveConfigV2", "rayClusterConfig")}
        for svc in (before, after)
    ]
    deferred = diff(*({k: v for k, v in f.items() if k in DEFERRED} for f in settings))
    spec = diff(*({k: v for k, v in f.items() if k not in DEFERRED} for f in settings))
    if cluster and _groups_appended(old_hashed, new_hashed):
        action = GROUPS_ADDED  # whatever the strategy: shouldUpdateCluster does not read it
    elif cluster and _strategy(after) == "NewClusterWithIncrementalUpgrade":
        action = INCREMENTAL
    elif cluster and _strategy(after) != "None":
        action = NEW_CLUSTER
    elif serve or spec:
        action = IN_PLACE
    elif cluster or ignored or deferred:
        action = NO_EFFECT
    else:
        action = NOTHING
    old_pods, new_pods = requested(before), requested(after)
    both = {k: old_pods[k] + new_pods[k] for k in old_pods}
    steps, steps_time = [], ""
    if action == INCREMENTAL:
        steps, steps_time = incremental_steps(after["spec"]["upgradeStrategy"]["clusterUpgradeOptions"])
    return Plan(
        action, serve, cluster, ignored, deferred, spec, other, _strategy(before), both, steps, steps_time
    )


def incremental_steps(options: dict) -> tuple[list[str], str]:
    """KubeRay's order (see above): traffic follows the new cluster's capacity in steps, then the
    old cluster's capacity shrinks, then the new one's grows, until it has 100%. Returns the steps
    and how long they take at least."""
    step, surge, interval = (
        options["stepSizePercent"],
        options.get("maxSurgePercent", 100),
        options["intervalSeconds"],
    )
    old, new, traffic, moves, steps = 100, 0, 0, 0, []
    while (old, new) != (0, 100):
        if traffic < new:
            traffic = min(100, traffic + step, new)
            wait = "" if moves == 0 else f", {interval} s after the last"
            steps.append(f"traffic to the new cluster: {traffic}%{wait}")
            moves += 1
        elif old + new > 100:
            old = max(0, old - surge)
            steps.append(f"old cluster's target_capacity: {old}%")
        else:
            new = min(100, new + surge)
            steps.append(f"new cluster's target_capacity: {new}% (once its replicas run, traffic may follow)")
    return steps, (
        f"{moves} traffic steps: at least {(moves - 1) * interval} s from the first to the last, plus "
        "the time each capacity change takes to start replicas."
    )


def _strategy(service: dict) -> str:
    """upgradeStrategy.type; unset means NewCluster (isZeroDowntimeUpgradeEnabled)."""
    return service["spec"].get("upgradeStrategy", {}).get("type", "NewCluster")


def _groups_appended(old: dict, new: dict) -> bool:
    """Only worker groups added at the end: the rest hashes as before."""
    count = len(old.get("workerGroupSpecs", []))
    if len(new.get("workerGroupSpecs", [])) <= count:
        return False
    return {**new, "workerGroupSpecs": new["workerGroupSpecs"][:count]} == old


def _others(objects: list[dict]) -> dict[tuple[str, str], dict]:
    """The objects Helm applies itself (all but the RayService), by kind and name."""
    return {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] != "RayService"}


def render_side(side: str, values: Path | None, repo: Path = REPO) -> list[dict]:
    """A values file rendered with this checkout's chart, or a git ref's chart (of `repo`) with its
    VALUES."""
    if Path(side).is_file():
        return render(Path(side))
    archive = subprocess.run(
        ["git", "archive", side, "charts", *([str(values)] if values else [])],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        sys.exit(
            f"{side!r}: not a values file, and git cannot read it as a ref: {archive.stderr.decode().strip()}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(tmp, filter="data")
        return render(Path(tmp) / values if values else None, chart=Path(tmp) / CHART.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", metavar="FROM", help="values file or git ref")
    parser.add_argument("new", metavar="TO", help="values file or git ref")
    parser.add_argument(
        "--values", type=Path, help="for git refs: the values file (repo path) to render with"
    )
    parser.add_argument(
        "--operator", default=DEFAULT_OPERATOR, help="KubeRay operator version (its hash rules)"
    )
    parser.add_argument("--repo", type=Path, default=REPO, help="the git repository refs are read from")
    args = parser.parse_args()
    print(f"Rollout plan: {args.old} -> {args.new}")
    sides = []
    for side in (args.old, args.new):
        try:
            sides.append(render_side(side, args.values, args.repo))
        except RenderError as refused:
            sys.exit(f"{side}: the chart refuses these values, so there is nothing to roll out:\n{refused}")
    print(plan(*sides, operator=args.operator).describe())


if __name__ == "__main__":
    main()
