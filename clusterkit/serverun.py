"""`make run`: `serve run` the app on a local Ray, and clean up what a killed run left behind.

Ray runs every worker in a session of its own and starts HAProxy (app/ray.env) as a child of its
proxy actor (ray/serve/_private/haproxy.py). Ctrl-C lets Ray stop them; a hard stop of `make run`
(SIGKILL to its process group, a closed terminal) does not, and the orphans keep :8000, :8404 and
:9101, so the next `serve run` dies with "cannot bind socket".

So each run tags its environment with a value of its own (`clusterkit.processes`), which every
process below it inherits, and records that value. The next run first ends whatever still carries
it, orphans included; a stranger never carries it. If a port it needs is still held by anything
else, it stops with that process's PID and command line instead of letting Ray fail obscurely.

SIGTERM, which `timeout`, process managers and IDEs send, is handled as Ctrl-C is: `serve run`
runs in a session of its own and gets one SIGINT from the runner, whichever signal came and
however often (a second SIGINT would interrupt Ray's shutdown).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import yaml

from clusterkit.localray import REPO, SERVE_CONFIG, ray_env
from clusterkit.processes import TAG, describe, end_tagged

STATE = REPO / "artifacts" / "run-processes.json"
# Ray's defaults (ray/serve/_private/constants.py), unless app/ray.env or the caller moves them.
HAPROXY_PORTS = {"RAY_SERVE_HAPROXY_STATS_PORT": 8404, "RAY_SERVE_HAPROXY_METRICS_PORT": 9101}


def end_stale(state: Path = STATE) -> list[str]:
    """End what the run recorded in `state` left behind; describe what was ended."""
    if not state.is_file():
        return []
    ended = end_tagged(json.loads(state.read_text())["tag"])
    state.unlink()
    return ended


def ports_needed(config: Path, env: dict[str, str]) -> dict[str, int]:
    http = yaml.safe_load(config.read_text()).get("http_options", {})
    ports = {"serve (http_options.port)": int(http.get("port", 8000))}
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        ports |= {f"HAProxy ({name})": int(env.get(name, default)) for name, default in HAPROXY_PORTS.items()}
    return ports


def holders(ports: dict[str, int]) -> list[str]:
    """Who listens on any of `ports`, e.g. `port 8000 (serve): pid 123 (haproxy -db -f ...)`."""
    wanted = {port: name for name, port in ports.items()}
    held = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in wanted:
            owner = describe(psutil.Process(conn.pid)) if conn.pid else "a process of another user"
            held.append(f"port {conn.laddr.port} ({wanted.pop(conn.laddr.port)}): {owner}")
    return held


class OneInterrupt:
    """Ctrl-C (SIGINT) and a stop request (SIGTERM, from `timeout`, a process manager, an IDE)
    alike become one SIGINT to the child: a second would cut its shutdown short.

    Installed before the child starts: a handled signal starts as the default in the child, while
    an ignored one stays ignored across exec. A `make run &` from a script ignores SIGINT, and
    `serve run` would then never stop."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.requested = self.sent = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request)

    def _request(self, signum, frame) -> None:
        self.requested = True
        self._send()

    def to(self, child: subprocess.Popen) -> None:
        self.child = child
        self._send()

    def _send(self) -> None:
        if self.requested and self.child and not self.sent:
            self.child.send_signal(signal.SIGINT)
            self.sent = True


def run(config: Path, env: dict[str, str], state: Path = STATE) -> int:
    """`serve run config` with `env` (the whole environment); its exit status."""
    for description in end_stale(state):
        print(f"ended a process left by an earlier run: {description}", flush=True)
    held = holders(ports_needed(config, env))
    if held:
        print("cannot start: ports this run needs are in use", *held, sep="\n  ", file=sys.stderr)
        print("stop them (kill PID), or move the ports, and run again", file=sys.stderr)
        return 1
    tag = f"serverun-{uuid.uuid4().hex}"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"tag": tag}))
    serve = Path(sys.executable).parent / "serve"
    # A session of its own, so that only the runner hears the terminal's and process managers'
    # signals: `serve run` stops Ray cleanly on SIGINT only (SIGTERM would kill it mid-way).
    stop = OneInterrupt()
    child = subprocess.Popen([str(serve), "run", str(config)], env={**env, TAG: tag}, start_new_session=True)
    stop.to(child)
    try:
        return child.wait()
    finally:
        # A clean stop leaves nothing behind; end anything that outlived it all the same.
        end_stale(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, nargs="?", default=SERVE_CONFIG)
    args = parser.parse_args()
    # A single local node has no external load balancer to drain: Ctrl-C stops in seconds
    # rather than after Ray's 30 s direct-ingress drain.
    env = {**os.environ, **ray_env(), "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
    sys.exit(run(args.config, env))


if __name__ == "__main__":
    main()
