"""NewClusterWithIncrementalUpgrade on the real operator, through a real Gateway API implementation
(Traefik, clusterkit.kube.gateway), against the same cluster change rolled out blue/green (NewCluster):
both under load, with the Ray pods' count and CPU requests sampled every second. The cluster is
sized so that capacity matters: no worker at rest beyond what Serve's replicas need (minReplicas 0),
two workers of 2 Ray CPUs for the app at 100%, one at 50%."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import requests
from kubernetes import client

from clusterkit.helmchart import CI_VALUES
from clusterkit.kube import gateway, release
from clusterkit.kuberay import quantity
from clusterkit.load import Load, Outcome, failed, summary
from clusterkit.poll import Sampler, wait_for

VALUES = CI_VALUES / "incremental-values.yaml"
SIZE = {
    "workerGroups": '[{"name": "cpu", "replicas": 0, "minReplicas": 0, "maxReplicas": 2, '
    '"resources": {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}}]',
    # Ingress 2 x 0.25 + Preprocessor 0.25 + Classifier 2 x 1.5 = 3.75 CPUs: two workers; at a
    # target_capacity of 50% (one replica each) 2.0: one.
    "serve.deployments.Classifier": '{"ray_actor_options": {"num_cpus": 1.5}, "autoscaling_config": '
    '{"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}',
    # A worker left without replicas goes after 10 s (60 by default), so a cluster whose
    # target_capacity shrinks can give back a node within KubeRay's 20 s between steps.
    "autoscaler.idleTimeoutSeconds": "10",
}
INCREMENTAL = "NewClusterWithIncrementalUpgrade"


@dataclass
class Sample:
    t: float  # from the helm upgrade
    pods: int  # Ray pods of the release, terminating ones included (they hold their requests)
    cpu: float  # their CPU requests
    weights: dict[str, int]  # the HTTPRoute's backend weights, by serve Service


@dataclass
class Upgrade:
    outcomes: list[Outcome]
    t0: float  # time.monotonic() at the helm upgrade
    samples: list[Sample] = field(default_factory=list)
    done_s: float = 0.0  # from the helm upgrade to the old cluster's pods gone

    def peak_extra(self) -> tuple[int, float]:
        """Pods and CPU requested beyond what ran before the upgrade, at their highest."""
        base = self.samples[0]
        return max(s.pods for s in self.samples) - base.pods, max(s.cpu for s in self.samples) - base.cpu

    def extra_cpu_seconds(self) -> float:
        base = self.samples[0].cpu
        return sum(max(0.0, s.cpu - base) for s in self.samples)  # a sample a second

    def shares(self, version: str, window_s: int = 10) -> list[tuple[int, float]]:
        """(window start from the helm upgrade, share of the answers from `version`) per window."""
        answered = [o for o in self.outcomes if o.status == 200 and o.start >= self.t0]
        out = []
        for w in range(0, int(self.done_s) + 1, window_s):
            inside = [o for o in answered if w <= o.start - self.t0 < w + window_s]
            if inside:
                out.append((w, sum(o.model_version == version for o in inside) / len(inside)))
        return out


def ray_pods(core: client.CoreV1Api) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(release.NAMESPACE, label_selector="ray.io/cluster").items
    return [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]


def gateway_object(custom: client.CustomObjectsApi, plural: str) -> dict:
    """KubeRay's Gateway (plural gateways) or HTTPRoute (httproutes) of the release; {} before it
    creates them."""
    name = f"{release.RELEASE}-{plural[:-1]}"
    try:
        return custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", release.NAMESPACE, plural, name
        )
    except client.ApiException as e:
        if e.status == 404:
            return {}
        raise


def route_weights(custom: client.CustomObjectsApi) -> dict[str, int]:
    route = gateway_object(custom, "httproutes")
    if not route:
        return {}
    (rule,) = route["spec"]["rules"]
    return {ref["name"]: ref.get("weight", 1) for ref in rule["backendRefs"]}


def sample(core, custom, t0: float) -> Sample:
    pods = ray_pods(core)
    cpu = sum(quantity((c.resources.requests or {}).get("cpu", 0)) for p in pods for c in p.spec.containers)
    return Sample(time.monotonic() - t0, len(pods), cpu, route_weights(custom))


def upgrade(url: str, mnist_test, change: dict[str, str], core, custom) -> Upgrade:
    """`change` (a new model version and a head memory limit: a new cluster) installed under load
    on `url`; sampled until the old cluster's pods are gone."""
    old, _ = release.clusters()
    # The baseline: the active cluster's pods alone (the one before it deleted).
    wait_for(
        "only the active cluster's pods",
        lambda: {p.metadata.labels["ray.io/cluster"] for p in ray_pods(core)} == {old},
        300,
    )
    with Load(url, mnist_test.images, mnist_test.labels, clients=4) as load:
        load.wait_for(100, timeout_s=120)
        result = Upgrade(load.outcomes, time.monotonic())
        with Sampler(lambda: sample(core, custom, result.t0)) as sampled:
            release.install(change, values=VALUES)
            wait_for("a pending cluster", lambda: release.clusters()[1] != "", 120)
            wait_for(
                "the upgrade done",
                lambda: release.clusters()[0] not in ("", old) and release.clusters()[1] == "",
                1200,
            )
            wait_for(
                "the old cluster's pods gone",
                lambda: not core.list_namespaced_pod(
                    release.NAMESPACE, label_selector=f"ray.io/cluster={old}"
                ).items,
                300,
            )
            result.done_s = time.monotonic() - result.t0
            load.wait_for(200, timeout_s=120)
    result.samples = [value for _, value in sampled.samples]
    result.outcomes = list(load.outcomes)
    return result


def gateway_url(custom) -> str:
    """KubeRay's Gateway, once its HTTPRoute sends all traffic to the active cluster (a route left
    from an earlier incremental upgrade may still name a deleted cluster until KubeRay updates it:
    Traefik answers that share with 500, as the Gateway API asks of an unresolvable backend)."""
    active, _ = release.clusters()

    def address() -> str:
        addresses = gateway_object(custom, "gateways").get("status", {}).get("addresses", [])
        return addresses[0]["value"] if addresses else ""

    wait_for("KubeRay's Gateway with an address", address, 120)
    wait_for(
        lambda: f"the HTTPRoute on {active} alone (now {route_weights(custom)})",
        lambda: route_weights(custom) == {f"{active}-serve-svc": 100},
        120,
    )
    # Traefik applies a route change within a second or two (15 requests answered 500 at -2 s
    # from the upgrade once, with the spec already right): answering ten times in a row is applied.
    url = f"http://{address()}:{gateway.LISTENER_PORT}"

    def answering() -> bool:
        try:
            return all(requests.get(f"{url}/health", timeout=5).ok for _ in range(10))
        except requests.RequestException:
            return False

    wait_for("the Gateway answering", answering, 60)
    return url


def new_weights(result: Upgrade, new_cluster: str) -> list[int]:
    """The new cluster's HTTPRoute weight at each sample, in order, repeats dropped."""
    seen: list[int] = []
    for s in result.samples:
        w = s.weights.get(f"{new_cluster}-serve-svc")
        if w is not None and (not seen or seen[-1] != w):
            seen.append(w)
    return seen


def values(strategy: str, version: str, memory: str) -> dict[str, str]:
    """The release at SIZE with `strategy`, model `version` and the head's memory limit (in
    KubeRay's cluster hash: a change of it is a new cluster)."""
    return {
        "upgrade.strategy": f'"{strategy}"',
        "model.version": f'"{version}"',
        "head.resources.limits.memory": f'"{memory}"',
    } | SIZE


def describe(what: str, result: Upgrade) -> str:
    pods, cpu = result.peak_extra()
    bad = [o.start - result.t0 for o in failed(result.outcomes)]
    when = f" (sent {min(bad):+.0f} to {max(bad):+.0f} s from helm upgrade)" if bad else ""
    return (
        f"kube: {what}: done (old pods gone) {result.done_s:.0f} s after helm upgrade; peak extra "
        f"{pods} pods, {cpu:.2f} CPU requested, {result.extra_cpu_seconds():.0f} extra CPU-seconds; "
        f"{summary(result.outcomes)}{when}"
    )


@pytest.mark.timeout(2700)
def test_an_incremental_upgrade_moves_traffic_in_steps_with_nothing_failed(
    serve_url, mnist_test, report, core
):
    custom = client.CustomObjectsApi(release.api())
    classes = custom.list_cluster_custom_object("gateway.networking.k8s.io", "v1", "gatewayclasses")["items"]
    if gateway.CLASS not in {c["metadata"]["name"] for c in classes}:
        pytest.fail(
            f"no GatewayClass {gateway.CLASS}: `make kube-up` and kind with KIND_LOCAL=1 install Traefik "
            "(clusterkit.kube.gateway); elsewhere install a Gateway API implementation with that class"
        )
    # The sized cluster, rolled out the plain way (not measured).
    release.install(values("NewCluster", "5", "3Gi"), values=VALUES)
    release.wait_settled()
    release.wait_ready()

    bg = upgrade(serve_url, mnist_test, values("NewCluster", "6", "2Gi"), core, custom)
    report(
        describe("the cluster change blue/green (NewCluster)", bg)
        + f"; version 6 share per 10 s: {bg.shares('6')}"
    )
    assert failed(bg.outcomes) == [], {(o.status, o.error) for o in failed(bg.outcomes)}

    # The strategy alone changes nothing in the cluster; KubeRay creates its Gateway and HTTPRoute.
    release.install(values(INCREMENTAL, "6", "2Gi"), values=VALUES)
    url = gateway_url(custom)
    inc = upgrade(url, mnist_test, values(INCREMENTAL, "7", "3Gi"), core, custom)
    new, _ = release.clusters()
    weights = new_weights(inc, new)
    shares = inc.shares("7")
    report(
        describe(f"the same change incremental (step 25%, surge 50%, through {url})", inc)
        + f"; the new cluster's HTTPRoute weights {weights}; version 7 share per 10 s: {shares}"
    )
    assert failed(inc.outcomes) == [], {(o.status, o.error) for o in failed(inc.outcomes)}
    assert {25, 50, 75} <= set(weights), weights
    assert any(0 < share < 1 for _, share in shares), "both versions answered during the steps"
    assert shares[-1][1] == 1.0
    # Never more than blue/green's: the new cluster at most at 100% beside the old at most at 100%.
    assert inc.peak_extra()[1] <= bg.peak_extra()[1] + 0.001
