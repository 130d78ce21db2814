"""`make run`: `serve run` the app on a local Ray, and clean up what a killed run left behind.

Ray starts HAProxy (app/ray.env) as a child of its proxy actor, and every Ray worker runs in a
session of its own (ray/serve/_private/haproxy.py, `_start_haproxy`). Ctrl-C lets Ray stop them;
a hard stop of `make run` (SIGKILL to its process group, a closed terminal) does not, and the
orphans keep :8000, :8404 and :9101, so the next `serve run` dies with "cannot bind socket".

So this runner records every process below it (PID and start time) while it runs, and the
config file of each HAProxy (`-f /tmp/haproxy-serve/<node ID>/haproxy.cfg`, unique to this run's
Ray node and kept across HAProxy's reloads, which start a new PID). The next run first ends what
is still alive of these: recorded processes matched by PID *and* start time, so a stranger that
reused a PID is never touched, and HAProxy processes serving a recorded config (one reloaded
just before the kill). If a port it needs is still held by anything else, it stops with that
process's PID and command line instead of letting Ray fail obscurely.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import yaml

from clusterkit.localray import REPO, SERVE_CONFIG, end_processes, ray_env

STATE = REPO / "artifacts" / "run-processes.json"
RECORD_EVERY_S = 0.5
# Ray's defaults (ray/serve/_private/constants.py), unless app/ray.env or the caller moves them.
HAPROXY_PORTS = {"RAY_SERVE_HAPROXY_STATS_PORT": 8404, "RAY_SERVE_HAPROXY_METRICS_PORT": 9101}


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline()) or proc.name()})"
    except psutil.Error:
        return f"pid {proc.pid}"


def _haproxy_config(cmdline: list[str]) -> str | None:
    """The config file of a HAProxy that Ray started (`haproxy -db -f CONFIG ...`)."""
    if cmdline[:1] and Path(cmdline[0]).name == "haproxy" and "-f" in cmdline[:-1]:
        return cmdline[cmdline.index("-f") + 1]
    return None


def end_stale(state: Path = STATE) -> list[str]:
    """End what the run recorded in `state` left behind; describe what was ended."""
    if not state.is_file():
        return []
    recorded = json.loads(state.read_text())
    started = {(p["pid"], p["create_time"]) for p in recorded["processes"]}
    configs = set(recorded["haproxy_configs"])
    stale = []
    for proc in psutil.process_iter(["pid", "create_time", "cmdline"]):
        info = proc.info
        if (info["pid"], info["create_time"]) in started or _haproxy_config(info["cmdline"] or []) in configs:
            stale.append(proc)
    ended = [_describe(proc) for proc in stale]
    end_processes(stale)
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
            owner = _describe(psutil.Process(conn.pid)) if conn.pid else "a process of another user"
            held.append(f"port {conn.laddr.port} ({wanted.pop(conn.laddr.port)}): {owner}")
    return held


def _record(root: int, state: Path, done: threading.Event) -> None:
    """Keep `state` listing every live descendant of `root`, and every HAProxy config, until `done`."""
    configs: set[str] = set()
    while not done.wait(RECORD_EVERY_S):
        try:
            tree = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        processes = []
        for proc in tree:
            try:
                processes.append({"pid": proc.pid, "create_time": proc.create_time(), "name": proc.name()})
                configs.add(_haproxy_config(proc.cmdline()))
            except psutil.NoSuchProcess:
                pass
        configs.discard(None)
        partial = state.with_suffix(".tmp")
        partial.write_text(json.dumps({"processes": processes, "haproxy_configs": sorted(configs)}))
        partial.replace(state)


def run(config: Path, env: dict[str, str], state: Path = STATE) -> int:
    """`serve run config` with `env` (the whole environment); its exit status."""
    for description in end_stale(state):
        print(f"ended a process left by an earlier run: {description}", flush=True)
    held = holders(ports_needed(config, env))
    if held:
        print("cannot start: ports this run needs are in use", *held, sep="\n  ", file=sys.stderr)
        print("stop them (kill PID), or move the ports, and run again", file=sys.stderr)
        return 1
    state.parent.mkdir(parents=True, exist_ok=True)
    serve = Path(sys.executable).parent / "serve"
    # Same process group: Ctrl-C reaches `serve run`, which stops Ray cleanly; the runner waits.
    child = subprocess.Popen([str(serve), "run", str(config)], env=env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    done = threading.Event()
    recorder = threading.Thread(target=_record, args=(child.pid, state, done), daemon=True)
    recorder.start()
    try:
        return child.wait()
    finally:
        done.set()
        recorder.join()
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
