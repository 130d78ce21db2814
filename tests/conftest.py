"""Shared fixtures: the real MNIST test set and the application on a local Ray."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from clusterkit.localray import WEIGHTS, LocalRayCluster, Ports, ray_env, serve_config, single_node
from clusterkit.poll import wait_for
from clusterkit.serveconfig import with_topology
from mnist_serve import data
from mnist_serve.config import DEPLOYMENTS

TESTS = Path(__file__).parent
# Figures the tests measure (times, failed requests), printed at the end of the run.
FIGURES: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--topology",
        choices=list(DEPLOYMENTS),
        default="composed",
        help="the serve topology the serve and contract suites deploy (the chart's default: composed)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer, from the folder it lives in; skip, saying why, what only
    the composed graph has when the suites run on another topology."""
    topology = config.getoption("topology")
    for item in items:
        layer = Path(item.fspath).relative_to(TESTS).parts[0]
        item.add_marker(getattr(pytest.mark, layer))
        if topology != "composed" and item.get_closest_marker("composed"):
            reason = item.get_closest_marker("composed").args[0]
            item.add_marker(pytest.mark.skip(reason=f"composed topology only: {reason}"))


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report():
    """Record a measured figure for the end-of-run summary (and the closing notes)."""
    return FIGURES.append


# A make above this run (`make test`) passes its level and flags down; plans are made as from a shell.
_MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def _make_plan(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", *args], cwd=TESTS.parent, env=_MAKE_ENV, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def make_plan() -> Callable[..., str]:
    """`make_plan(target, VAR=value, ...)`: the commands `make -n` prints, none of them run."""
    return _make_plan


@pytest.fixture(scope="session")
def mnist_test() -> data.MNIST:
    return data.load("test")


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest) -> str:
    """The topology under test (`--topology`): both must pass the serve and contract suites."""
    return request.config.getoption("topology")


@pytest.fixture(scope="session")
def app_config(topology: str) -> Callable[[Ports], dict]:
    """The checked-in serve config in the topology under test, for a cluster's ports."""
    return lambda ports: with_topology(serve_config(ports), topology)


@pytest.fixture(scope="session")
def cluster(app_config) -> LocalRayCluster:
    if not WEIGHTS.is_file():
        pytest.fail(f"no trained weights at {WEIGHTS}: run `make model` (make test does)")
    # The shipped environment, but a replaced ingress replica drains for 2 s rather than
    # Ray's 30 s margin for external load balancers: HAProxy here is local and reloads at once.
    env = {**ray_env(), "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
    cluster = LocalRayCluster(single_node(env))
    cluster.start()
    try:
        cluster.deploy(app_config(cluster.ports))
        cluster.wait_running()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def base_url(cluster: LocalRayCluster) -> str:
    return cluster.serve_url


@pytest.fixture
def redeploy(cluster: LocalRayCluster, app_config):
    """Deploy a changed serve config for one test; the original is restored after."""

    def apply(change) -> dict:
        config = app_config(cluster.ports)
        change(config)
        started = time.time()
        cluster.deploy(config)
        return cluster.wait_running(since=started)

    yield apply
    started = time.time()
    cluster.deploy(app_config(cluster.ports))
    cluster.wait_running(since=started)
    assert requests.get(f"{cluster.serve_url}/health", timeout=10).ok


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a loopback port free right now, for servers a test starts."""
    return _free_port


def _answers(ready: Callable[[], bool]) -> bool:
    try:
        return ready()
    except requests.ConnectionError:  # not listening yet
        return False


@contextmanager
def _server(command: list[str], log: Path, ready: Callable[[], bool], timeout_s: float = 30, **popen):
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)

    def running() -> None:
        assert process.poll() is None, (
            f"{command[0]} exited with {process.returncode}: {log.read_text()[-3000:]}"
        )

    try:
        wait_for(
            lambda: f"{command[0]} ready: {log.read_text()[-3000:]}",
            lambda: _answers(ready),
            timeout_s,
            0.2,
            abort=running,
        )
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def server():
    """`with server(command, log, ready) as process:` a real server a test runs (Prometheus,
    Redis, S3), started once `ready()` holds (its log's tail if it dies or times out first),
    stopped by PID whatever happens."""
    return _server


@dataclass(frozen=True)
class S3Server:
    """moto's S3 API server on loopback, and the environment a client needs to reach it."""

    endpoint: str
    env: dict[str, str]

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory, server) -> S3Server:
    """moto_server (moto's standalone S3 API, pinned in the dev extras) on a free port; stopped by PID."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with server(command, log, ready=lambda: requests.get(endpoint, timeout=1) is not None):
        yield S3Server(endpoint, env)


@dataclass(frozen=True)
class Redis:
    """A password-protected redis-server a test started, and redis-cli against it."""

    host: str
    port: int
    password: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def cli(self, *args: str) -> str:
        auth = ["--no-auth-warning", "-a", self.password]
        command = ["redis-cli", "-h", self.host, "-p", str(self.port), *auth, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout


@pytest.fixture(scope="session")
def redis_at(tmp_path_factory, server):
    """`with redis_at(host) as redis:` Debian's redis-server (the GCS store of the head-loss tests)
    bound to `host` on a free port, with a random password; stopped by PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: `make redis` installs it (make test does)")

    @contextmanager
    def start(host: str):
        redis = Redis(host, _free_port(), secrets.token_hex(16))
        workdir = tmp_path_factory.mktemp("redis")
        command = [binary, "--bind", host, "--port", str(redis.port), "--requirepass", redis.password]
        command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
        log = workdir / "redis.log"
        with server(command, log, ready=lambda: redis.cli("ping").strip() == "PONG", timeout_s=10):
            yield redis

    return start
