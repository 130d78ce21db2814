"""What KubeRay will do when a RayService changes from one render of the chart to another.

    python -m clusterkit.rollout_plan FROM TO [--values k8s/envs/prod/values.yaml]
    (make rollout-plan FROM=main TO=HEAD VALUES=k8s/envs/prod/values.yaml)

FROM and TO are values files (rendered with this checkout's chart) or git refs (the chart and
VALUES as they are at that ref). KubeRay (v1.7) applies a change to serveConfigV2 alone in place,
with one more PUT to the running cluster; a change to rayClusterConfig, other than the worker
counts the autoscaler owns, starts a new cluster and moves traffic to it once all its
applications are RUNNING (upgradeStrategy NewCluster), which needs room for both clusters.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clusterkit.helmchart import CHART, REPO, rayservice, render
from clusterkit.kuberay import quantity, serve_config

IN_PLACE = "in-place"
NEW_CLUSTER = "new-cluster"
WORKER_COUNTS = "worker-counts"
NOTHING = "nothing"


@dataclass(frozen=True)
class Plan:
    action: str
    serve_changes: list[str]
    cluster_changes: list[str]
    spec_changes: list[str]  # upgrade strategy, deletion delay: applied without a rollout
    other_changes: list[str]
    strategy: str
    both_clusters: dict[str, float]  # resources requested while old and new clusters both run

    def describe(self) -> str:
        lines = {
            NOTHING: ["KubeRay will do nothing: the RayService is unchanged."],
            IN_PLACE: [
                "KubeRay will update the serve config in place: one PUT to the running cluster, no new pods."
            ],
            WORKER_COUNTS: [
                "Only worker counts change: KubeRay resizes the running cluster in place. The Ray "
                "autoscaler owns them, and Argo CD ignores them (k8s/argocd/mnist-serve.yaml)."
            ],
            NEW_CLUSTER: [self._new_cluster()],
        }[self.action]
        for title, changes in (
            ("Changed in serveConfigV2", self.serve_changes),
            ("Changed in rayClusterConfig", self.cluster_changes),
            ("Changed elsewhere in the RayService", self.spec_changes),
            ("Other objects Helm will change", self.other_changes),
        ):
            if changes:
                lines += [f"{title}:", *(f"  {change}" for change in changes)]
        if self.action == NEW_CLUSTER and self.strategy != "None":
            need = ", ".join(f"{value:g} {name}" for name, value in self.both_clusters.items() if value)
            lines.append(
                f"WARNING: old and new clusters run side by side until traffic moves: {need} requested."
            )
        return "\n".join(lines)

    def _new_cluster(self) -> str:
        if self.strategy == "None":
            return (
                "KubeRay will NOT roll out the cluster change: upgradeStrategy is None "
                "(only the serve config applies)."
            )
        how = (
            "shift traffic step by step"
            if self.strategy == "NewClusterWithIncrementalUpgrade"
            else "switch traffic"
        )
        return (
            f"KubeRay will start a new Ray cluster and {how} to it once all its applications "
            "are RUNNING, then delete the old one."
        )


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


def _without_worker_counts(cluster: dict) -> dict:
    """rayClusterConfig as KubeRay compares it: the autoscaler owns workerGroupSpecs[].replicas."""
    groups = [{k: v for k, v in g.items() if k != "replicas"} for g in cluster.get("workerGroupSpecs", [])]
    return {**cluster, "workerGroupSpecs": groups}


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


def plan(old: list[dict], new: list[dict]) -> Plan:
    before, after = rayservice(old), rayservice(new)
    serve = diff(serve_config(before), serve_config(after))
    cluster = diff(
        _without_worker_counts(before["spec"]["rayClusterConfig"]),
        _without_worker_counts(after["spec"]["rayClusterConfig"]),
    )
    others, others_new = _others(old), _others(new)
    other = [
        f"{kind}/{name}"
        for kind, name in sorted(set(others) | set(others_new))
        if others.get((kind, name)) != others_new.get((kind, name))
    ]
    spec = diff(
        *(
            {k: v for k, v in svc["spec"].items() if k not in ("serveConfigV2", "rayClusterConfig")}
            for svc in (before, after)
        )
    )
    counts = diff(_worker_counts(before), _worker_counts(after), "workerGroupSpecs")
    action = NEW_CLUSTER if cluster else IN_PLACE if serve else WORKER_COUNTS if counts else NOTHING
    strategy = after["spec"].get("upgradeStrategy", {}).get("type", "NewCluster")
    old_pods, new_pods = requested(before), requested(after)
    both = {k: old_pods[k] + new_pods[k] for k in old_pods}
    return Plan(action, serve, cluster + counts, spec, other, strategy, both)


def _others(objects: list[dict]) -> dict[tuple[str, str], dict]:
    """The objects Helm applies itself (all but the RayService), by kind and name."""
    return {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] != "RayService"}


def _worker_counts(service: dict) -> list[dict]:
    return [
        {"groupName": g["groupName"], "replicas": g.get("replicas")}
        for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    ]


def render_side(side: str, values: Path | None) -> list[dict]:
    """A values file rendered with this checkout's chart, or a git ref's chart with its VALUES."""
    if Path(side).is_file():
        return render(Path(side))
    archive = subprocess.run(
        ["git", "archive", side, "charts", *([str(values)] if values else [])],
        cwd=REPO,
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
    args = parser.parse_args()
    print(f"Rollout plan: {args.old} -> {args.new}")
    print(plan(render_side(args.old, args.values), render_side(args.new, args.values)).describe())


if __name__ == "__main__":
    main()
