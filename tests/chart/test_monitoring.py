"""The chart's observability objects: the PrometheusRule checked and unit-tested by the real
promtool (one firing and one quiet case per alert, thresholds read from the load test's own SLO
file), the Grafana dashboard ConfigMap, and the SLO copy in the chart."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import pytest
import yaml
from ray.serve._private.constants import REQUEST_LATENCY_BUCKETS_MS

from clusterkit.helmchart import CHART, NAMESPACE, REPO, by_kind, render

SLO_FILE = REPO / "loadtest" / "slo.yaml"
SLO = yaml.safe_load(SLO_FILE.read_text())
# The app is "mnist" (app/serve_config.yaml).
SEL = {"namespace": NAMESPACE, "application": "mnist"}
MINUTES = 30  # length of every input series; alerts are evaluated at the end


def promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing: run `make prometheus` (make test does)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture(scope="module")
def rule_file(rendered, tmp_path_factory):
    (rule,) = by_kind(rendered["exposed"], "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def series(name: str, values: str, **labels: str) -> dict:
    selector = ",".join(f'{k}="{v}"' for k, v in (SEL | labels).items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def counter(per_minute: float) -> str:
    return f"0+{per_minute:g}x{MINUTES}"


def gauge(value: float) -> str:
    return f"{value:g}x{MINUTES}"


def requests_with_5xx(ratio: float) -> list[dict]:
    """100 requests a minute on /, `ratio` of them answered 503."""
    name = "ray_serve_num_http_requests_total"
    return [
        series(name, counter(100 * (1 - ratio)), route="/", status_code="200", method="POST"),
        series(name, counter(100 * ratio), route="/", status_code="503", method="POST"),
    ]


def latencies_above(bound_ms: float | None) -> list[dict]:
    """60 requests a minute on /predict, all in one latency bucket: the first whose lower edge is at
    least twice `bound_ms` (every percentile above the bound), or the lowest bucket (None)."""
    edges = [0.0, *REQUEST_LATENCY_BUCKETS_MS]
    lower = next(e for e in edges if e >= 2 * bound_ms) if bound_ms is not None else 0.0
    filled = [le for le in REQUEST_LATENCY_BUCKETS_MS if le > lower]
    name = "ray_serve_http_request_latency_ms_bucket"
    buckets = [
        series(name, counter(60 if le in filled else 0), le=f"{le:g}", route="/predict")
        for le in REQUEST_LATENCY_BUCKETS_MS
    ]
    return [*buckets, series(name, counter(60), le="+Inf", route="/predict")]


def replicas(healthy: int, target: int) -> list[dict]:
    return [
        series("ray_serve_deployment_replica_healthy", gauge(healthy), deployment="Classifier"),
        series("ray_serve_autoscaling_target_replicas", gauge(target), deployment="Classifier"),
    ]


def bad_ratio() -> float:
    # Above the SLO's bound; with a bound of 0 any 5xx at all.
    return max(0.1, math.ceil(SLO["max_failure_ratio"] * 20 + 1) / 10)


def expected_ratio_summary() -> str:
    return (
        f"mnist-serve answers {bad_ratio() * 100:g}% of requests with 5xx "
        f"(SLO max_failure_ratio {SLO['max_failure_ratio']:g})"
    )


def latency_alert(quantile: str) -> dict:
    return {
        "exp_labels": {"severity": "warning", "slo": f"{quantile}_ms", "route": "/predict"},
        "exp_annotations": {
            "summary": f"{quantile} latency of /predict is above the SLO's {SLO[f'{quantile}_ms']:g} ms",
            "runbook_url": "https://github.com/mnist-serve/mnist-serve/blob/main/charts/README.md#alerts",
        },
    }


RUNBOOK = {"runbook_url": "https://github.com/mnist-serve/mnist-serve/blob/main/charts/README.md#alerts"}

# alert -> (series where it must fire, the alert it must raise), (series where it must stay quiet)
CASES = {
    "MnistServeErrorRatioHigh": (
        requests_with_5xx(bad_ratio()),
        {
            "exp_labels": {"severity": "critical", "slo": "max_failure_ratio"},
            "exp_annotations": {"summary": expected_ratio_summary(), **RUNBOOK},
        },
        requests_with_5xx(SLO["max_failure_ratio"] / 2),
    ),
    "MnistServeLatencyP95High": (latencies_above(SLO["p95_ms"]), latency_alert("p95"), latencies_above(None)),
    "MnistServeLatencyP99High": (latencies_above(SLO["p99_ms"]), latency_alert("p99"), latencies_above(None)),
    "MnistServeDeployFailed": (
        [series("ray_serve_application_status", gauge(1))],
        {
            "exp_labels": {"severity": "critical", **SEL},
            "exp_annotations": {"summary": "Serve application mnist failed to deploy", **RUNBOOK},
        },
        [series("ray_serve_application_status", gauge(6))],
    ),
    "MnistServeDeploymentUnhealthy": (
        [series("ray_serve_deployment_status", gauge(2), deployment="Classifier")],
        {
            "exp_labels": {"severity": "critical", "deployment": "Classifier", **SEL},
            "exp_annotations": {"summary": "Serve deployment Classifier is unhealthy", **RUNBOOK},
        },
        # 4 = UPSCALING: busy, not broken.
        [series("ray_serve_deployment_status", gauge(4), deployment="Classifier")],
    ),
    "MnistServeReplicasPending": (
        replicas(healthy=1, target=3),
        {
            "exp_labels": {"severity": "warning", "deployment": "Classifier"},
            "exp_annotations": {"summary": "2 replica(s) of Classifier wanted but not healthy", **RUNBOOK},
        },
        replicas(healthy=3, target=3),
    ),
    "MnistServeNoHealthyReplicas": (
        replicas(healthy=0, target=1),
        {
            "exp_labels": {"severity": "critical", "deployment": "Classifier"},
            "exp_annotations": {"summary": "Serve deployment Classifier has no healthy replica", **RUNBOOK},
        },
        # Scaled to zero on purpose: none healthy, none wanted.
        replicas(healthy=0, target=0),
    ),
}


def test_promtool_accepts_the_rendered_rules(rule_file):
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_every_alert_has_a_unit_test_and_a_runbook(rule_file):
    alerts = {r["alert"] for g in yaml.safe_load(rule_file.read_text())["groups"] for r in g["rules"]}
    assert alerts == set(CASES)
    runbook = (CHART / "README.md").read_text().split("## Alerts", 1)[1]
    for alert in alerts:
        assert f"`{alert}`" in runbook, f"no runbook line for {alert} in charts/README.md"


@pytest.mark.parametrize("alert", CASES)
def test_alert_fires_past_its_threshold_and_stays_quiet_within(rule_file, alert):
    firing, expected, quiet = CASES[alert]
    # Long enough for every `for:` (pendingFor 15m is the longest).
    at = f"{MINUTES - 1}m"
    tests = {
        "rule_files": [rule_file.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": f"{alert} fires",
                "interval": "1m",
                "input_series": firing,
                "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": [expected]}],
            },
            {
                "name": f"{alert} stays quiet",
                "interval": "1m",
                "input_series": quiet,
                "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": []}],
            },
        ],
    }
    path = rule_file.parent / f"{alert}_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", path.name, cwd=rule_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_are_off_unless_asked_for(rendered):
    assert not by_kind(rendered["default"], "PrometheusRule")
    names = [c["metadata"]["name"] for c in by_kind(rendered["default"], "ConfigMap")]
    assert not [name for name in names if name.endswith("-dashboard")]


def test_slo_copy_in_the_chart_is_the_load_tests():
    """One source for the load test's gate and the alerts: `make chart-files` copies it."""
    copy = CHART / "files" / "slo.yaml"
    assert copy.read_text() == SLO_FILE.read_text(), f"{copy} drifted from {SLO_FILE}: run `make chart-files`"


def test_a_changed_slo_changes_the_alerts(tmp_path):
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    changed = SLO | {"p95_ms": 123, "max_failure_ratio": 0.05}
    (chart / "files" / "slo.yaml").write_text(yaml.safe_dump(changed))
    (rule,) = by_kind(render(chart=chart, sets={"metrics.prometheusRule.enabled": "true"}), "PrometheusRule")
    exprs = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert exprs["MnistServeLatencyP95High"].split(">")[-1].strip() == "123"
    assert exprs["MnistServeErrorRatioHigh"].split(">")[-1].strip() == "0.05"


def test_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard(rendered):
    (configmap,) = [c for c in by_kind(rendered["exposed"], "ConfigMap") if "mnist-serve.json" in c["data"]]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Serving"}
    dashboard = json.loads(configmap["data"]["mnist-serve.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    custom = render(
        CHART / "ci" / "exposed-values.yaml",
        sets={
            "metrics.dashboard.label": '"dashboards.example.com/grafana"',
            "metrics.dashboard.labelValue": '"yes"',
        },
    )
    (configmap,) = [c for c in by_kind(custom, "ConfigMap") if "mnist-serve.json" in c["data"]]
    assert configmap["metadata"]["labels"]["dashboards.example.com/grafana"] == "yes"


def test_logging_config_reaches_serve_config_v2(rendered):
    (service,) = by_kind(rendered["exposed"], "RayService")
    logging_config = yaml.safe_load(service["spec"]["serveConfigV2"])["logging_config"]
    # The app's JSON encoding and access log, with the scenario's level and extra attribute on top.
    assert logging_config == {
        "encoding": "JSON",
        "enable_access_log": True,
        "log_level": "WARNING",
        "additional_log_standard_attrs": ["name"],
    }


def test_dashboard_json_is_a_grafana_dashboard_on_its_variables():
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    for panel in panels:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # Scoped to the chosen namespace; only the variables Grafana defines.
            assert 'namespace=~"$namespace"' in target["expr"], (panel["title"], target["expr"])
            assert set(re.findall(r"\$\w+", target["expr"])) <= {"$namespace", "$__rate_interval"}
