"""A local Ray cluster started the way KubeRay starts a head pod, for tests.

`ray start --head --block` in its own session; the serve config is PUT to the
dashboard's REST API and polled until RUNNING, as the KubeRay operator does.
Teardown signals the whole process tree by PID, so nothing leaks and no other
Ray cluster on the machine is touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "app" / "serve_config.yaml"
RAY_ENV = REPO / "app" / "ray.env"
WEIGHTS = REPO / "artifacts" / "model" / "mnist_cnn.pt"


@dataclass(frozen=True)
class Ports:
    """Fixed loopback ports above Ray's default worker port range (10002–19999)."""

    gcs: int = 26379
    dashboard: int = 28265
    client: int = 20001
    serve: int = 28000
    haproxy_stats: int = 28404
    haproxy_metrics: int = 29101


def ray_env() -> dict[str, str]:
    """The environment every Ray node of mnist-serve starts with (app/ray.env)."""
    lines = (line.strip() for line in RAY_ENV.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def serve_config(ports: Ports) -> dict:
    """The checked-in serve config, bound to loopback and the local weights."""
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    config["http_options"].update(host="127.0.0.1", port=ports.serve)
    for app in config["applications"]:
        app["args"]["model"]["uri"] = str(WEIGHTS)
    return config


class LocalRayCluster:
    def __init__(
        self, ports: Ports | None = None, num_cpus: int = 2, env: dict[str, str] | None = None
    ) -> None:
        # Ray's unix socket paths must stay short: a fresh dir directly under /tmp (not
        # pytest's deep tmp_path). Its logs are left there for diagnosis.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mnist-serve-", dir="/tmp"))
        self.env = ray_env() if env is None else env
        self.ports = ports = ports or Ports()
        self.num_cpus = num_cpus
        self.process: subprocess.Popen | None = None
        self.dashboard_url = f"http://127.0.0.1:{ports.dashboard}"
        self.serve_url = f"http://127.0.0.1:{ports.serve}"

    def _check_ports_free(self) -> None:
        for name, port in vars(self.ports).items():
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(
                        f"port {port} ({name}) is in use: is another local Ray cluster running?"
                    )

    def start(self, timeout_s: float = 90) -> None:
        self._check_ports_free()
        ray = Path(sys.executable).parent / "ray"
        self.log = (self.temp_dir / "ray-start.log").open("w")
        self.process = subprocess.Popen(
            [
                str(ray),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={self.ports.gcs}",
                f"--ray-client-server-port={self.ports.client}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.ports.dashboard}",
                f"--num-cpus={self.num_cpus}",
                f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
            env={
                **os.environ,
                "RAY_USAGE_STATS_ENABLED": "0",
                # Explicit, so that a ~/.ray/auth_token left by any local ray.init()
                # (Ray >= 2.52 writes one) does not switch this loopback cluster to token auth.
                "RAY_AUTH_MODE": "disabled",
                # HAProxy's side ports, moved off their defaults so that this cluster and
                # a `make run` on the same machine do not collide.
                "RAY_SERVE_HAPROXY_STATS_PORT": str(self.ports.haproxy_stats),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(self.ports.haproxy_metrics),
                **self.env,
            },
        )
        try:
            self._wait_for_dashboard(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_for_dashboard(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}; see {self.log.name}")
            try:
                status = requests.get(f"{self.dashboard_url}/api/version", timeout=2).status_code
                if status == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"the Ray dashboard did not answer 200 within {timeout_s}s "
            f"(last status {status}); see {self.log.name}"
        )

    def deploy(self, config: dict) -> None:
        """PUT a serve config, as the KubeRay operator does."""
        response = requests.put(f"{self.dashboard_url}/api/serve/applications/", json=config, timeout=30)
        if not response.ok:
            raise RuntimeError(f"PUT serve config: HTTP {response.status_code}: {response.text}")

    def details(self) -> dict:
        url = f"{self.dashboard_url}/api/serve/applications/?api_type=declarative"
        return requests.get(url, timeout=10).json()

    def replicas(self, app: str = "mnist") -> dict[str, set[str]]:
        """Replica IDs per deployment: a restarted or replaced replica gets a new one."""
        deployments = self.details()["applications"][app]["deployments"]
        return {name: {r["replica_id"] for r in d["replicas"]} for name, d in deployments.items()}

    def wait_running(self, timeout_s: float = 120, since: float = 0.0) -> dict:
        """Poll until every application is RUNNING; raise with Ray's message on failure.

        `since`: ignore a status older than this deploy time (seconds since the
        epoch), so a redeploy is not mistaken for the previous RUNNING state.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            apps = self.details().get("applications") or {}
            fresh = all(a.get("last_deployed_time_s", 0) >= since for a in apps.values())
            statuses = {name: app["status"] for name, app in apps.items()}
            if apps and fresh and all(s == "RUNNING" for s in statuses.values()):
                return apps
            failed = {n: apps[n]["message"] for n, s in statuses.items() if s == "DEPLOY_FAILED"}
            if failed and fresh:
                raise RuntimeError(f"serve applications failed to deploy: {failed}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"applications not RUNNING after {timeout_s}s: {statuses}")
            time.sleep(1)

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        # Ray workers start their own sessions: collect them as the raylet's children
        # before anything dies, then end the whole tree at once.
        for proc in tree:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=10)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=5)
        self.process = None
        self.log.close()
