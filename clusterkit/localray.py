"""A local Ray cluster started the way KubeRay starts its pods, for tests and demos.

Each node (a `kuberay.Node`: the head, or one pod of a worker group) is a
`ray start ... --block` in its own session; the serve config is PUT to the
dashboard's REST API and polled until RUNNING, as the KubeRay operator does.
Each node's processes carry a tag in their environment (`clusterkit.processes`); teardown ends
what carries it, orphans included, so nothing leaks and no other Ray cluster on the machine is
touched.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import psutil
import requests
import yaml

from clusterkit import helmchart, kuberay
from clusterkit.kuberay import Node
from clusterkit.load import root_cause
from clusterkit.poll import wait_for
from clusterkit.processes import TAG, end_tagged

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "app" / "serve_config.yaml"
RAY_ENV = REPO / "app" / "ray.env"
WEIGHTS = REPO / "artifacts" / "model" / "mnist_cnn.pt"


@dataclass(frozen=True)
class Ports:
    """Fixed loopback ports, above Ray's worker port range (10002-19999) and below the
    kernel's ephemeral range (32768+), so random ports never take them."""

    gcs: int = 26379
    dashboard: int = 28265
    client: int = 20001
    serve: int = 28000
    grpc: int = 28900
    # Each node's own ports are a block of NODE_PORTS from here: node i from nodes + len(NODE_PORTS) * i.
    nodes: int = 21000
    # The ranges Serve's controller hands ingress replicas their direct-ingress ports from. Ray's
    # defaults (30000-31000, 40000-41000, ray/serve/_private/constants.py) are bound with
    # SO_REUSEPORT, so a `make run` beside this cluster would share its replicas' ports, and
    # the kernel would send make run's HAProxy traffic to this cluster's replicas.
    direct_ingress_http: int = 23000
    direct_ingress_grpc: int = 24000
    direct_ingress_size: int = 500

    def head(self) -> dict[str, int]:
        """The ports the head listens on (the rest are bases of ranges)."""
        return {name: getattr(self, name) for name in ("gcs", "dashboard", "client", "serve", "grpc")}

    def node(self, index: int) -> dict[str, int]:
        return {name: self.nodes + len(NODE_PORTS) * index + offset for offset, name in enumerate(NODE_PORTS)}


NODE_IP = "127.0.0.2"

# Ports every Ray node opens (KubeRay gives each pod its own IP; here they share one).
NODE_PORTS = (
    "metrics-export-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "haproxy-stats",
    "haproxy-metrics",
    "worker-proxy-http",
    "worker-proxy-grpc",
    "fallback-proxy-http",
    "fallback-proxy-grpc",
)


def ray_env() -> dict[str, str]:
    """The environment every Ray node of mnist-serve starts with (app/ray.env)."""
    lines = (line.strip() for line in RAY_ENV.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def localize(config: dict, ports: Ports) -> dict:
    """A serve config made runnable here: loopback, the head's serve port, the local weights in
    place of the image's (a model in an object store is left as it is)."""
    config = copy.deepcopy(config)
    config["http_options"].update(host="127.0.0.1", port=ports.serve)
    if "grpc_options" in config:
        config["grpc_options"]["port"] = ports.grpc
    for app in config["applications"]:
        if urlparse(app["args"]["model"]["uri"]).scheme in ("", "file"):
            app["args"]["model"]["uri"] = str(WEIGHTS)
    return config


def serve_config(ports: Ports) -> dict:
    """The checked-in serve config, made runnable here."""
    return localize(yaml.safe_load(SERVE_CONFIG.read_text()), ports)


def flags(params: dict[str, str]) -> list[str]:
    """`ray start` flags from parameters, as KubeRay writes them (convertParamMap): "true" alone,
    "false" dropped, except for the two options whose value may be true or false."""
    out = []
    for key, value in sorted(params.items()):
        value = str(value)
        if value.lower() not in ("true", "false") or key in ("log-color", "include-dashboard"):
            out.append(f"--{key}={value}")
        elif value.lower() == "true":
            out.append(f"--{key}")
    return out


def single_node(env: dict[str, str], num_cpus: int = 2) -> list[Node]:
    """One head that runs the replicas itself (the `make run` shape)."""
    return [Node("head", "head", {"num-cpus": str(num_cpus), "block": "true"}, env)]


class RayDashboard:
    """What the KubeRay operator does through a head's dashboard: PUT the serve config, poll it."""

    def __init__(self, dashboard_url: str) -> None:
        self.dashboard_url = dashboard_url

    def wait_up(self, timeout_s: float, alive=lambda: None, logs: str = "") -> None:
        """Wait until the dashboard answers; `alive()` raises if what should serve it has died;
        `logs` says where to look when it never answers."""

        def answers() -> bool:
            try:
                return requests.get(f"{self.dashboard_url}/api/version", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(f"the Ray dashboard to answer 200 (see {logs})", answers, timeout_s, 0.5, abort=alive)

    def _state(self, resource: str) -> list[dict]:
        """Ray's state API: every node or actor, with details."""
        url = f"{self.dashboard_url}/api/v0/{resource}?limit=1000&detail=true"
        return requests.get(url, timeout=10).json()["data"]["result"]["result"]

    def alive_nodes(self) -> list[dict]:
        """ALIVE nodes, with resources and labels."""
        return [n for n in self._state("nodes") if n["state"] == "ALIVE"]

    def actors(self, class_name: str) -> list[dict]:
        """The live actors of a class: node, PID, resources."""
        return [a for a in self._state("actors") if a["class_name"] == class_name and a["state"] == "ALIVE"]

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
        seen: dict = {}

        def running() -> bool:
            seen.clear()
            seen.update(self.details().get("applications") or {})
            fresh = all(a.get("last_deployed_time_s", 0) >= since for a in seen.values())
            failed = {n: a["message"] for n, a in seen.items() if a["status"] == "DEPLOY_FAILED"}
            if failed and fresh:
                raise RuntimeError(f"serve applications failed to deploy: {failed}")
            return bool(seen) and fresh and all(a["status"] == "RUNNING" for a in seen.values())

        statuses = lambda: {name: app["status"] for name, app in seen.items()}  # noqa: E731
        wait_for(lambda: f"applications RUNNING (now {statuses()})", running, timeout_s)
        return seen


class LocalRayCluster(RayDashboard):
    """Ray nodes started as KubeRay starts pods (`ray start ... --block`), one process tree
    each, on loopback. What differs from a pod, and why, is in `_command` and `_environment`."""

    def __init__(
        self, nodes: list[Node], ports: Ports | None = None, env: dict[str, str] | None = None
    ) -> None:
        # Ray's unix socket paths must stay short: a fresh dir directly under /tmp (not
        # pytest's deep tmp_path). Its logs are left there for diagnosis.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mnist-serve-", dir="/tmp"))
        # Where a successful `ray start` records the GCS address (ray._private.utils.write_ray_address).
        self.address_record = self.temp_dir / "ray_current_cluster"
        assert nodes and nodes[0].is_head and not any(n.is_head for n in nodes[1:]), "the head comes first"
        self.nodes = {node.name: node for node in nodes}
        self.index = {node.name: i for i, node in enumerate(nodes)}
        self.ports = ports = ports or Ports()
        # Extra environment for every node, on top of each node's own (tests shorten timers).
        self.env = env or {}
        self.processes: dict[str, subprocess.Popen] = {}
        super().__init__(f"http://127.0.0.1:{ports.dashboard}")
        self.serve_url = f"http://127.0.0.1:{ports.serve}"
        self.grpc_url = f"127.0.0.1:{ports.grpc}"

    def _command(self, node: Node) -> list[str]:
        ports = self.ports.node(self.index[node.name])
        params = dict(node.params)
        memory = int(params.get("memory", 0))
        params.update(
            {
                # Ray swaps 127.0.0.1 for the machine's routable IP (it expects other hosts to
                # join); 127.0.0.2 is loopback too and kept, so the nodes talk only over lo.
                "node-ip-address": NODE_IP,
                "temp-dir": str(self.temp_dir),
                "disable-usage-stats": "true",
                **{name: str(ports[name]) for name in NODE_PORTS[:4]},
            }
        )
        if memory and "object-store-memory" not in params:
            # In a pod Ray sizes its object store from the container's memory limit (30%);
            # here there is no cgroup to read it from, so pass the same figure.
            params["object-store-memory"] = str(int(memory * 0.3))
        if node.is_head:
            params.update(
                {
                    "port": str(self.ports.gcs),
                    "ray-client-server-port": str(self.ports.client),
                    "dashboard-host": "127.0.0.1",  # KubeRay: 0.0.0.0 inside the pod's network
                    "dashboard-port": str(self.ports.dashboard),
                }
            )
        else:
            params["address"] = f"{NODE_IP}:{self.ports.gcs}"
        ray = Path(sys.executable).parent / "ray"
        return [str(ray), "start", *(["--head"] if node.is_head else []), *flags(params)]

    def _environment(self, node: Node) -> dict[str, str]:
        ports = self.ports.node(self.index[node.name])
        env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Explicit, so that a ~/.ray/auth_token left by any local ray.init()
            # (Ray >= 2.52 writes one) does not switch this loopback cluster to token auth.
            "RAY_AUTH_MODE": "disabled",
            # Each node's HAProxy needs its own side ports (one IP here); Ray keeps its files
            # apart by node ID under /tmp/haproxy-serve (not movable: socket paths max 97 chars).
            "RAY_SERVE_HAPROXY_STATS_PORT": str(ports["haproxy-stats"]),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports["haproxy-metrics"]),
            # HAProxy's backup server is its own node's proxy actor at 127.0.0.1:8500 (Ray's
            # default): on a shared IP it would be another node's, or another Ray's on this host.
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ports["fallback-proxy-http"]),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(ports["fallback-proxy-grpc"]),
            **self._direct_ingress_env(),
            TAG: self._tag(node.name),
            **node.env,
            **self.env,
        }
        if not node.is_head:
            # Every node runs a proxy on the serve port; a worker's must not collide with the head's.
            env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(ports["worker-proxy-http"])
            env["RAY_SERVE_WORKER_PROXY_GRPC_PORT"] = str(ports["worker-proxy-grpc"])
        return env

    def _direct_ingress_env(self) -> dict[str, str]:
        env = {}
        for protocol in ("HTTP", "GRPC"):
            low = getattr(self.ports, f"direct_ingress_{protocol.lower()}")
            env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{protocol}_PORT"] = str(low)
            env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{protocol}_PORT"] = str(
                low + self.ports.direct_ingress_size - 1
            )
        return env

    def _tag(self, name: str = "") -> str:
        """What every process of node `name` (of any node, by default) is tagged with."""
        # The trailing slash keeps node "w-1" from matching "w-10".
        return f"{self.temp_dir}/{name}/" if name else f"{self.temp_dir}/"

    def _check_ports_free(self, nodes: list[Node]) -> None:
        ports = {
            f"node {n.name} {k}": v for n in nodes for k, v in self.ports.node(self.index[n.name]).items()
        }
        if any(n.is_head for n in nodes):
            ports |= self.ports.head()
        for name, port in ports.items():
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(
                        f"port {port} ({name}) is in use: is another local Ray cluster running?"
                    )

    def start(self, timeout_s: float = 120) -> None:
        """Start every node, the head first; return when all have joined."""
        try:
            for count, name in enumerate(self.nodes, start=1):
                self.start_node(name)
                if name == "head":
                    self.wait_up(timeout_s, self._head_alive, f"{self.temp_dir}/ray-start-head.log")
                # One at a time (KubeRay starts pods at once): nodes sharing one machine pick
                # their socket names from what exists, and starting together they collide.
                self.wait_nodes(count, timeout_s)
        except BaseException:
            self.stop()
            raise

    def start_node(self, name: str) -> None:
        """Start one node (again, after `kill_node`: KubeRay recreating a lost pod)."""
        node = self.nodes[name]
        self._check_ports_free([node])
        if node.is_head:
            # A new pod starts with an empty /tmp/ray. Here the record of the address that the
            # last successful `ray start` wrote (the lost head's, or one that crashed after
            # starting) would remain, and with the workers' raylets (other pods in Kubernetes)
            # naming that address, `ray start --head` takes it for a cluster already running
            # and refuses (ray/scripts/scripts.py, "Fail early").
            self.address_record.unlink(missing_ok=True)
        log = (self.temp_dir / f"ray-start-{name}.log").open("a")
        self.processes[name] = subprocess.Popen(
            self._command(node),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
            env=self._environment(node),
        )
        log.close()

    def recreate_node(self, name: str, timeout_s: float = 120, attempts: int = 3) -> int:
        """KubeRay recreating a lost pod: the same node started again, with the same environment
        (for the head, the same GCS fault tolerance settings); waits until it has joined.
        Returns how many starts it took."""
        for attempt in range(1, attempts + 1):
            self.start_node(name)
            try:
                if self.nodes[name].is_head:
                    self.wait_up(timeout_s, self._head_alive, f"{self.temp_dir}/ray-start-head.log")
                self.wait_nodes(len(self.processes), timeout_s)
                return attempt
            except RuntimeError:
                # `ray start` exited (on a loaded machine the raylet can give up waiting for its
                # agent); Kubernetes restarts a failed container, KubeRay recreates the pod.
                # What the failed start left (a proxy's HAProxy, say) must not hold its ports.
                self.kill_node(name)
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def proxy_url(self, name: str) -> str:
        """The serve proxy of one node: what a Service endpoint for that pod reaches."""
        if self.nodes[name].is_head:
            return self.serve_url
        return f"http://127.0.0.1:{self.ports.node(self.index[name])['worker-proxy-http']}"

    def wait_ready(self, names: list[str], timeout_s: float = 120) -> None:
        """Wait until these nodes' serve proxies pass KubeRay's worker readiness probe (`GET
        :8000/-/healthz`, ray-operator/controllers/ray/common/pod.go; FACTS.md): only then is a
        pod an endpoint of the serve Service. Ray starts a proxy where replicas land, so after
        the app is RUNNING; until its routes arrive it answers requests 404 and its health check 503."""
        waiting: dict[str, str] = {}

        def ready() -> bool:
            waiting.clear()
            for name in names:
                try:
                    response = requests.get(f"{self.proxy_url(name)}/-/healthz", timeout=2)
                    if not response.ok:
                        waiting[name] = f"{response.status_code} {response.text[:80]!r}"
                except requests.RequestException as exc:
                    waiting[name] = root_cause(exc)
            return not waiting

        wait_for(lambda: f"serve proxies ready (now {waiting})", ready, timeout_s, 0.5)

    def _head_alive(self) -> None:
        head = self.processes["head"]
        if head.poll() is not None:
            raise RuntimeError(
                f"ray start exited with {head.returncode}; see {self.temp_dir}/ray-start-head.log"
            )

    def wait_nodes(self, count: int, timeout_s: float = 120) -> list[dict]:
        alive: list[dict] = []

        def all_alive() -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"node {name} exited with {process.returncode}; see {self.temp_dir}")
            try:
                alive[:] = self.alive_nodes()
            except (requests.RequestException, ValueError):  # a head coming back answers 500s a while
                alive.clear()
            return len(alive) == count

        wait_for(lambda: f"{count} Ray nodes alive (now {len(alive)})", all_alive, timeout_s, 0.5)
        return alive

    def node_id(self, name: str) -> str:
        """The Ray node ID of one of our nodes (read from its raylet's command line)."""
        for proc in psutil.Process(self.processes[name].pid).children(recursive=True):
            if proc.name() == "raylet":
                (arg,) = [a for a in proc.cmdline() if a.startswith("--node_id=")]
                return arg.removeprefix("--node_id=")
        raise LookupError(f"node {name} has no raylet")

    def kill_node(self, name: str) -> None:
        """Lose a node at once, as when its pod or machine dies: SIGKILL to all it started."""
        end_tagged(self._tag(name), graceful=False)
        self.processes.pop(name).wait(timeout=5)

    def stop(self) -> None:
        """Stop every node, workers first; nothing of this cluster is left running."""
        for name in reversed(list(self.processes)):
            end_tagged(self._tag(name))
            self.processes.pop(name).wait(timeout=5)
        end_tagged(self._tag())  # what a node killed earlier may have left

    def save(self, path: Path) -> None:
        """Record the nodes' tag, so that another process can stop them (`make cluster-down`)."""
        state = {"temp_dir": str(self.temp_dir), "tag": self._tag(), "nodes": list(self.processes)}
        path.write_text(json.dumps(state, indent=2))


def stop_saved(path: Path) -> None:
    """Stop the nodes recorded by `LocalRayCluster.save`: every process with their tag."""
    end_tagged(json.loads(path.read_text())["tag"])
    path.unlink()


@dataclass
class RayServiceRun:
    """A rendered RayService brought up here: its cluster, and what bringing it up took."""

    rayservice: dict
    cluster: LocalRayCluster
    seconds_to_running: float
    values: list[Path]

    def rendered(self, sets: dict[str, str]) -> dict:
        """The RayService these values render with `sets` on top (`helm upgrade --set-json`)."""
        return helmchart.rayservice(helmchart.render(self.values, sets=sets))

    def put(self, config: dict) -> float:
        """PUT a serve config as it is in serveConfigV2 (made local here); when it was sent."""
        started = time.time()
        self.cluster.deploy(localize(config, self.cluster.ports))
        return started

    def deploy(self, config: dict) -> dict:
        """PUT a serve config and wait until every application is RUNNING."""
        return self.cluster.wait_running(timeout_s=300, since=self.put(config))

    def predict(self, images: np.ndarray, node: str = "head") -> requests.Response:
        """Raw uint8 images to /predict through one node's serve proxy (the head's by default)."""
        return requests.post(
            f"{self.cluster.proxy_url(node)}/predict",
            data=images.tobytes(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )

    def placement(self, app: str = "mnist") -> dict[str, list[str]]:
        """Node ID of each running replica, per deployment."""
        deployments = self.cluster.details()["applications"][app]["deployments"]
        return {
            name: [r["node_id"] for r in d["replicas"] if r["state"] == "RUNNING"]
            for name, d in deployments.items()
        }


def start_rayservice(
    values: list[Path],
    ports: Ports | None = None,
    env: dict[str, str] | None = None,
    secrets: dict[tuple[str, str], str] | None = None,
) -> RayServiceRun:
    """Render the chart with `values` and do what KubeRay does: start the head and every worker
    pod as Ray nodes, PUT serveConfigV2 to the dashboard, poll until every app is RUNNING.
    `secrets`: the Kubernetes Secrets the pods read, {(name, key): value}."""
    rayservice = helmchart.rayservice(helmchart.render(values))
    cluster = LocalRayCluster(kuberay.nodes(rayservice, secrets), ports=ports, env=env)
    started = time.monotonic()
    cluster.start()
    try:
        cluster.deploy(localize(kuberay.serve_config(rayservice), cluster.ports))
        cluster.wait_running(timeout_s=300)
    except BaseException:
        cluster.stop()
        raise
    return RayServiceRun(rayservice, cluster, time.monotonic() - started, values)


STATE = REPO / "artifacts" / "local-cluster.json"


def main() -> None:
    parser = argparse.ArgumentParser(description="The chart's RayService on a local multi-node Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="render, start the nodes, deploy; leave it running")
    up.add_argument("--values", "-f", type=Path, action="append", default=[], help="values file(s)")
    commands.add_parser("down", help="stop what `up` started")
    args = parser.parse_args()
    if args.command == "down":
        if not STATE.is_file():
            sys.exit(f"nothing to stop: {STATE} does not exist")
        stop_saved(STATE)
        print("stopped")
        return
    if STATE.is_file():
        sys.exit(f"a local cluster is already up ({STATE}): `make cluster-down` first")
    run = start_rayservice(args.values)
    STATE.parent.mkdir(parents=True, exist_ok=True)
    run.cluster.save(STATE)
    print(f"RUNNING after {run.seconds_to_running:.0f} s on {len(run.cluster.nodes)} nodes:")
    for name, node in run.cluster.nodes.items():
        print(f"  {name:<8} ray start {' '.join(flags(node.params))}")
    print(f"serve      {run.cluster.serve_url}  (e.g. curl {run.cluster.serve_url}/health)")
    print(f"dashboard  {run.cluster.dashboard_url}")
    print(f"logs       {run.cluster.temp_dir}")
    print("stop with   make cluster-down")


if __name__ == "__main__":
    main()
