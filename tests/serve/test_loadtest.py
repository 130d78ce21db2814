"""`make loadtest` against the real local service: Locust with every user class for a few
seconds, no failures, every label checked, and the results folder complete."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from clusterkit.localray import REPO
from mnist_serve.config import DEPLOYMENTS


@pytest.fixture(scope="module")
def results(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("loadtest")
    run = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "loadtest",
            f"HOST={cluster.serve_url}",
            f"RAY_DASHBOARD={cluster.dashboard_url}",
            "SHAPE=steady",
            "DURATION=8",
            "PEAK_USERS=10",
            f"RESULTS={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run.stdout


def test_every_format_was_sent_and_checked_without_failures(results):
    out, _ = results
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader((out / "locust_stats.csv").open())}
    endpoints = {"tutorial": "/", "json": "/predict", "raw": "/predict", "png": "/predict"}
    endpoints["oip-uint8"] = endpoints["oip-binary"] = "/v2/models/mnist/infer"
    for fmt, path in endpoints.items():
        http = rows[("POST", f"{fmt} {path}")]
        assert int(http["Request Count"]) > 0 and int(http["Failure Count"]) == 0
        # Every digit of every answer checked: raw requests carry eight.
        digits = 8 if fmt == "raw" else 1
        assert int(rows[("CHECK", f"{fmt} labels")]["Request Count"]) == digits * int(http["Request Count"])


def test_report_plots_and_gate_are_written(results, topology):
    out, stdout = results
    assert (out / "report.html").stat().st_size > 10_000
    for plot in ("throughput", "latency", "failures", "replicas"):
        assert (out / f"locust_{plot}.png").stat().st_size > 5_000
    replicas = list(csv.DictReader((out / "locust_replicas.csv").open()))
    assert {r["deployment"] for r in replicas} == set(DEPLOYMENTS[topology])
    assert "SLO gate over" in stdout and "FAIL" not in stdout


def test_the_gate_fails_this_run_on_an_impossible_bound(results):
    out, _ = results
    gate = subprocess.run(
        [sys.executable, "loadtest/slo.py", str(out / "locust"), "--p95-ms", "0.001"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert gate.returncode == 1
    assert gate.stderr.strip() == "SLO failed: p95_ms"
