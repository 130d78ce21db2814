"""Observability against the real service: a real Prometheus scrapes the local Ray node's metrics
port (what the chart's PodMonitor scrapes in a pod) during a short Locust run, the dashboard's
queries return data, and the chart's alert rules evaluate cleanly on the real series."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as grpcclient
from test_triton_clients import tensor
from tritonclient.utils import InferenceServerException

from clusterkit.helmchart import CHART, NAMESPACE, by_kind, render
from clusterkit.localray import REPO
from clusterkit.poll import wait_for
from mnist_serve.signature import MODEL_NAME

DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text())
# Panels of metrics only GPU nodes export: checked to exist in Ray's source, not queried.
GPU_PANELS = {"GPU utilization per node (GPU nodes only)"}
METRIC = re.compile(r"\b(ray_[a-z0-9_]+)\b")
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def targets() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def concrete(expr: str) -> str:
    """A panel's query as Grafana sends it, its variables filled in."""
    return expr.replace("$namespace", NAMESPACE).replace("$__rate_interval", "2m")


@pytest.fixture(scope="module")
def prometheus(prometheus_with):
    (rule,) = by_kind(render(CHART / "ci" / "exposed-values.yaml"), "PrometheusRule")
    with prometheus_with(rule["spec"]) as prometheus:
        yield prometheus


@pytest.fixture(scope="module")
def load(cluster, prometheus, mnist_test, tmp_path_factory, report):
    """A short Locust run of every format, a few refused requests and gRPC calls, then Ray's next
    export."""
    out = tmp_path_factory.mktemp("loadtest")
    started = time.monotonic()
    run = subprocess.run(
        ["make", "--no-print-directory", "loadtest", f"HOST={cluster.serve_url}", "SHAPE=steady",
         "DURATION=10", "PEAK_USERS=8", f"RESULTS={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    refused = {
        "unsupported_media_type": requests.post(f"{cluster.serve_url}/predict", data=b"x", timeout=10),
        "invalid_input": requests.post(f"{cluster.serve_url}/predict", json={"image": [[1, 2]]}, timeout=10),
    }
    assert [r.status_code for r in refused.values()] == [415, 422]
    # OIP over gRPC, counted as the HTTP routes are: 8 digits classified, an unknown model refused.
    with grpcclient.InferenceServerClient(cluster.grpc_url) as oip:
        pixels = tensor(grpcclient, mnist_test.images[:8], "UINT8", "flat")
        assert oip.infer(MODEL_NAME, [pixels]).as_numpy("label").shape == (8,)
        with pytest.raises(InferenceServerException, match="unknown model"):
            oip.infer("resnet", [pixels])
    # Ray exports every 10 s and Prometheus scrapes every 2 s: wait until the refusals, the last
    # things sent, are in several scrapes (a rate needs two samples).
    rejected = "ray_mnist_serve_rejected_requests_total"
    held = [
        f'count by (reason) (count_over_time({rejected}{{reason="{reason}"}}[2m]) >= 3)'
        for reason in ("unsupported_media_type", "invalid_input")
    ] + [f'count_over_time({rejected}{{route="{GRPC_INFER}", reason="unknown_model"}}[2m]) >= 3']
    wait_for("the refused requests in Prometheus", lambda: all(prometheus.query(e) for e in held), 90, 2)
    report(f"observability: Locust run + first scrape holding it in {time.monotonic() - started:.0f} s")
    return out


def test_prometheus_scrapes_every_metric_family_under_load(prometheus, load, report):
    (up,) = prometheus.query('up{job="ray"}')
    assert up["value"][1] == "1"
    locust = sum(
        int(r["Request Count"])
        for r in csv.DictReader((load / "locust_stats.csv").open())
        if r["Type"] == "POST"
    )
    # The session's other tests send requests too: at least Locust's. Each ingress replica exports
    # on its own 10 s clock, so the last replica's count may land a scrape or two later.
    total = f'sum(ray_mnist_serve_requests_total{{namespace="{NAMESPACE}"}})'
    counted = lambda: float(prometheus.query(total)[0]["value"][1])  # noqa: E731
    wait_for(
        lambda: f"Locust's {locust} requests counted (now {counted():.0f})",
        lambda: counted() >= locust,
        30,
        2,
    )
    formats = {r["metric"]["format"] for r in prometheus.query("ray_mnist_serve_images_total")}
    assert {"json", "raw", "png", "grpc"} <= formats
    routes = {r["metric"]["route"] for r in prometheus.query("ray_mnist_serve_requests_total")}
    assert {"/", "/predict", "/v2/models/{model_name}/infer", GRPC_INFER} <= routes
    (grpc,) = prometheus.query(f'sum(ray_mnist_serve_images_total{{route="{GRPC_INFER}"}})')
    assert float(grpc["value"][1]) >= 8
    (version,) = prometheus.query("count by (model_version) (ray_mnist_serve_model_info)")
    assert version["metric"]["model_version"] == "1"
    (samples,) = prometheus.query('scrape_samples_scraped{job="ray"}')
    (series,) = prometheus.query('count({job="ray"})')
    report(
        f"observability: Prometheus scraped {samples['value'][1]} samples per scrape, {series['value'][1]} "
        f"series; {counted():.0f} requests counted, Locust sent {locust}"
    )


@pytest.mark.parametrize(("title", "expr"), [t for t in targets() if t[0] not in GPU_PANELS])
def test_dashboard_query_returns_data(prometheus, load, title, expr):
    assert prometheus.query(concrete(expr)), f"panel {title!r}: no data for {concrete(expr)}"


def test_dashboard_references_only_metrics_that_exist(prometheus, load):
    scraped = set(prometheus.api("label/__name__/values"))
    # GPU gauges exist only on GPU nodes: they must at least be metrics Ray's node agent defines.
    reporter = Path(find_spec("ray.dashboard.modules.reporter.reporter_agent").origin).read_text()
    exprs = [expr for _, expr in targets()] + [DASHBOARD["templating"]["list"][1]["definition"]]
    names = {name for expr in exprs for name in METRIC.findall(expr)}
    gpu = {name for title, expr in targets() if title in GPU_PANELS for name in METRIC.findall(expr)}
    assert names - gpu <= scraped, f"not exported: {sorted(names - gpu - scraped)}"
    for name in gpu:
        assert f'"{name.removeprefix("ray_")}"' in reporter, f"{name} is not a Ray node metric"


def test_the_chart_alert_rules_evaluate_on_the_real_series(prometheus, load, cluster, app_config):
    rules = prometheus.api("rules")["groups"]
    evaluated = [r for g in rules for r in g["rules"]]
    assert len(evaluated) == 7
    for rule in evaluated:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    # Serve reports the app RUNNING (6) and every deployment HEALTHY (6): nothing to alert on.
    (status,) = prometheus.query('ray_serve_application_status{application="mnist"}')
    assert status["value"][1] == "6"
    healthy = {
        r["metric"]["deployment"]: float(r["value"][1])
        for r in prometheus.query("sum by (deployment) (ray_serve_deployment_replica_healthy)")
    }
    (app,) = app_config(cluster.ports)["applications"]
    assert healthy == {d["name"]: d["num_replicas"] for d in app["deployments"]}
