"""The chart's alerts seen firing, and resolving, in a real Prometheus that evaluates the chart's
rendered rules on the real Serve cluster's series: each condition is caused the way it happens in
production (overload, slow batches, a config the replicas refuse, a replica that cannot be placed)
and undone again.

The rules are rendered with `metrics.prometheusRule.rateWindow: 30s` (a value users set) and every
rule's `for:` set to 0s: `for` is Prometheus's own hold (1 to 15 minutes in the chart), not the
expression under test."""

from __future__ import annotations

import time

import pytest

from clusterkit.helmchart import CHART, by_kind, render
from clusterkit.load import Load, summary
from clusterkit.poll import wait_for

ALERTS = {
    "MnistServeErrorRatioHigh",
    "MnistServeLatencyP95High",
    "MnistServeLatencyP99High",
    "MnistServeDeployFailed",
    "MnistServeDeploymentUnhealthy",
    "MnistServeReplicasPending",
    "MnistServeNoHealthyReplicas",
}
# Ray exports every 10 s, Prometheus scrapes and evaluates every 2 s, rates look 30 s back.
SEEN_S = 120

pytestmark = pytest.mark.composed("the conditions are caused through the Classifier deployment")


@pytest.fixture(scope="module")
def prometheus(prometheus_with):
    sets = {"metrics.prometheusRule.rateWindow": '"30s"'}
    (rule,) = by_kind(render(CHART / "ci" / "exposed-values.yaml", sets=sets), "PrometheusRule")
    rules = rule["spec"]
    for group in rules["groups"]:
        for each in group["rules"]:
            each["for"] = "0s"
    assert {each["alert"] for group in rules["groups"] for each in group["rules"]} == ALERTS
    with prometheus_with(rules) as prometheus:
        yield prometheus


@pytest.fixture(autouse=True)
def quiet(prometheus):
    """Each test starts with nothing firing, so that what fires is its own doing."""
    wait_for(
        lambda: f"no alert firing (now {sorted(prometheus.firing())})",
        lambda: not prometheus.firing(),
        SEEN_S,
        2,
    )


def fire(prometheus, alerts: set[str]) -> float:
    return wait_for(
        lambda: f"{sorted(alerts)} firing (now {sorted(prometheus.firing())})",
        lambda: alerts <= prometheus.firing(),
        SEEN_S,
        2,
    )


def resolve(prometheus, alerts: set[str]) -> float:
    return wait_for(
        lambda: f"{sorted(alerts)} resolved (firing {sorted(prometheus.firing())})",
        lambda: not alerts & prometheus.firing(),
        SEEN_S,
        2,
    )


def deployment(config: dict, name: str) -> dict:
    (found,) = [d for d in config["applications"][0]["deployments"] if d["name"] == name]
    return found


def autoscaled_classifier(config: dict, replicas: int) -> dict:
    """The Classifier autoscaled between `replicas` and at least 1 (Serve then exports its target)."""
    classifier = deployment(config, "Classifier")
    classifier.pop("num_replicas")
    bounds = {"min_replicas": replicas, "initial_replicas": replicas, "max_replicas": max(replicas, 1)}
    classifier["autoscaling_config"] = bounds
    return classifier


def test_a_healthy_cluster_fires_nothing(prometheus, cluster, mnist_test):
    with Load(cluster.serve_url, mnist_test.images, mnist_test.labels, clients=2) as load:
        load.wait_for(200)
        wait_for(
            "a rate over 30 s of traffic",
            lambda: prometheus.query("ray_serve_num_http_requests_total"),
            60,
            2,
        )
    assert prometheus.firing() == set()


def test_5xx_answers_fire_the_error_ratio_alert(prometheus, cluster, redeploy, mnist_test, report):
    """Overload: queues of 2 and 32 clients of 256 images get 503s (the SLO allows none)."""

    def tiny_queues(config):
        for each in config["applications"][0]["deployments"]:
            each["max_ongoing_requests"] = each["max_queued_requests"] = 2

    redeploy(tiny_queues)
    with Load(cluster.serve_url, mnist_test.images, mnist_test.labels, clients=32, batch=256) as load:
        fired = fire(prometheus, {"MnistServeErrorRatioHigh"})
    resolved = resolve(prometheus, {"MnistServeErrorRatioHigh"})
    report(
        f"alert MnistServeErrorRatioHigh firing {fired:.0f} s into {summary(load.outcomes)}; "
        f"resolved {resolved:.0f} s after the load stopped"
    )


def test_slow_answers_fire_the_latency_alerts(prometheus, cluster, redeploy, mnist_test, report):
    """Batches that wait 1 s for company, at the Ingress and at the Classifier: every request takes
    about 2 s, past the SLO's p95 (500 ms) and p99 (1000 ms)."""
    alerts = {"MnistServeLatencyP95High", "MnistServeLatencyP99High"}

    def waiting_batches(config):
        for name in ("Ingress", "Classifier"):
            deployment(config, name)["user_config"] = {"max_batch_size": 4096, "batch_wait_timeout_s": 1.0}

    redeploy(waiting_batches)
    with Load(cluster.serve_url, mnist_test.images, mnist_test.labels, clients=2) as load:
        fired = fire(prometheus, alerts)
    resolved = resolve(prometheus, alerts)
    p50 = sorted(o.latency_s for o in load.outcomes)[len(load.outcomes) // 2]
    report(
        f"alerts {sorted(alerts)} firing {fired:.0f} s into requests of p50 {p50:.1f} s; "
        f"resolved {resolved:.0f} s after"
    )


def test_a_refused_config_fires_the_deploy_alerts(prometheus, cluster, app_config, redeploy, report):
    """A Classifier batching config its replicas refuse (max_batch_size 0): the builder cannot see
    it, so every replica fails in `reconfigure` and the deployment, then the app, fail."""
    alerts = {"MnistServeDeployFailed", "MnistServeDeploymentUnhealthy"}

    def refused_batching(config):
        deployment(config, "Classifier")["user_config"]["max_batch_size"] = 0

    with pytest.raises(RuntimeError, match=r"Failed to update the deployments \[.Classifier.\]"):
        redeploy(refused_batching)
    fired = fire(prometheus, alerts)
    cluster.deploy(app_config(cluster.ports))
    cluster.wait_running()
    resolved = resolve(prometheus, alerts)
    report(
        f"alerts {sorted(alerts)} firing {fired:.0f} s after DEPLOY_FAILED; resolved {resolved:.0f} s "
        "after the good config was back"
    )


def test_a_replica_that_cannot_be_placed_fires_the_replica_alerts(prometheus, cluster, app_config, report):
    """A Classifier asking for more CPUs than the node has: the old replica is replaced by one that
    stays pending, so the deployment has no healthy replica and one wanted."""
    alerts = {"MnistServeNoHealthyReplicas", "MnistServeReplicasPending"}
    config = app_config(cluster.ports)
    autoscaled_classifier(config, 1)["ray_actor_options"]["num_cpus"] = 64
    try:
        cluster.deploy(config)
        fired = fire(prometheus, alerts)
    finally:
        cluster.deploy(app_config(cluster.ports))
        cluster.wait_running(timeout_s=180)
    resolved = resolve(prometheus, alerts)
    report(
        f"alerts {sorted(alerts)} firing {fired:.0f} s after the deploy; resolved {resolved:.0f} s after "
        "the good config was back"
    )


def test_a_deployment_scaled_to_zero_on_purpose_fires_nothing(prometheus, redeploy, report):
    """Serve scale to zero (charts/ci/scale-to-zero-values.yaml): no healthy Classifier replica is
    the intended state while idle, not an outage."""
    redeploy(lambda config: autoscaled_classifier(config, 0))
    healthy = 'sum(ray_serve_deployment_replica_healthy{deployment="Classifier"})'
    wait_for(
        "the Classifier's healthy count at 0 in Prometheus",
        lambda: [r for r in prometheus.query(healthy) if r["value"][1] == "0"],
        SEEN_S,
        2,
    )
    time.sleep(20)  # ten evaluations of the rules on that state
    firing = prometheus.firing()
    report(f"scaled to zero on purpose, 0 healthy Classifier replicas: firing {sorted(firing) or 'nothing'}")
    assert firing == set()
