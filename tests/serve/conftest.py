"""A real Prometheus, started by a test module, scraping the serve cluster's Ray metrics port as
the chart's PodMonitor scrapes a pod, and evaluating the rules the module gives it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
import yaml

from clusterkit.helmchart import NAMESPACE


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def api(self, path: str) -> dict | list:
        return requests.get(f"{self.url}/api/v1/{path}", timeout=10).json()["data"]

    def firing(self) -> set[str]:
        """The names of the alerts firing now."""
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}


@pytest.fixture(scope="session")
def prometheus_with(cluster, tmp_path_factory, free_port, server):
    """`with prometheus_with(rules) as prometheus:` a Prometheus scraping every 2 s, labelling the
    series as a PodMonitor in helmchart.NAMESPACE would, and evaluating `rules` (a PrometheusRule's
    spec) every 2 s; stopped by PID after."""

    @contextmanager
    def start(rules: dict) -> Iterator[Prometheus]:
        if not shutil.which("prometheus"):
            pytest.fail("prometheus is missing: run `make prometheus` (make test does)")
        work = tmp_path_factory.mktemp("prometheus")
        (work / "rules.yaml").write_text(yaml.safe_dump(rules))
        metrics_port = cluster.ports.node(0)["metrics-export-port"]
        target = {"targets": [f"127.0.0.2:{metrics_port}"], "labels": {"namespace": NAMESPACE}}
        config = {
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{"job_name": "ray", "static_configs": [target]}],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        command = [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        url = f"http://127.0.0.1:{port}"
        with server(
            command,
            work / "prometheus.log",
            ready=lambda: requests.get(f"{url}/-/ready", timeout=1).ok,
            cwd=work,
        ):
            yield Prometheus(url)

    return start
