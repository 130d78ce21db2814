"""make bench: the raw model, this service and plain FastAPI + uvicorn, side by side.

Measures images/s and p50/p99 latency for single-image requests at 1, 32, 128
and 256 concurrent clients (JSON and raw bytes) and for 64-image raw requests,
against plain FastAPI with 1 and 2 uvicorn workers and the raw model's limit,
then prints one table with the ratios to the 2-worker peer (what a user would
run on 2 cores). Load comes from wrk (C, one thread) so the client takes as
little of the machine as possible.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import torch

from clusterkit.localray import WEIGHTS, LocalRayCluster, Ports, ray_env, serve_config, single_node
from clusterkit.serveconfig import with_topology
from mnist_serve import client, data
from mnist_serve.preprocessing import to_model_input
from mnist_serve.weights import load_model

REPO = Path(__file__).resolve().parents[1]


# (format, images per request, concurrent clients)
LOADS = [
    *((fmt, 1, clients) for fmt in ("json", "raw") for clients in (1, 32, 128, 256)),
    *(("raw", 64, clients) for clients in (1, 32, 128)),
]
# This service per topology with what we ship (app/ray.env: throughput-optimised,
# HAProxy), and the composed one with Ray's defaults: (topology, env).
SERVICE_MODES = {
    "serve-fused": ("fused", ray_env()),
    "serve-composed": ("composed", ray_env()),
    "serve-composed-ray-defaults": ("composed", {}),
}
PLAIN_WORKERS = (1, 2)
PLAIN_PORT = 28100


def raw_model(seconds: float = 2.0) -> dict:
    """In-process forward passes: the ceiling for any server on this machine."""
    model = load_model(str(WEIGHTS))
    images = data.load("test").images
    best = {"img_s": 0.0}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch_size in (1, 8, 32, 128):
            batch = to_model_input(images[:batch_size])
            done, started = 0, time.perf_counter()
            with torch.inference_mode():
                while time.perf_counter() - started < seconds / 4:
                    model(batch)
                    done += batch_size
            rate = done / (time.perf_counter() - started)
            print(f"  raw model: {threads} thread(s), batch {batch_size:>3}: {rate:7.0f} img/s", flush=True)
            if rate > best["img_s"]:
                best = {"img_s": rate, "threads": threads, "batch_size": batch_size}
    return best


def wrk(url: str, request: client.Request, connections: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".body") as body:
        body.write(request.body)
        body.flush()
        env = {**os.environ, "BODY_FILE": body.name, "CONTENT_TYPE": request.headers["content-type"]}
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(REPO / "bench" / "wrk_report.lua"),
                url + request.path,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["img_s"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def load_key(fmt: str, images: int, clients: int) -> str:
    return f"{fmt} x{images}/{clients}"


def load_series(name: str, url: str, seconds: int) -> dict:
    images = data.load("test").images
    results = {}
    for fmt, count, clients in LOADS:
        request = client.encode(fmt, images[:count])
        if clients == 1:
            wrk(url, request, 8, 2)  # warm up
        r = wrk(url, request, clients, seconds)
        r["img_s"] *= count
        key = load_key(fmt, count, clients)
        results[key] = r
        print(
            f"  {name:<28} {key:<12} {r['img_s']:7.0f} img/s  "
            f"p50 {r['p50_us'] / 1e3:6.1f} ms  p99 {r['p99_us'] / 1e3:6.1f} ms  "
            f"errors {r['non_2xx'] + r['socket_errors']}",
            flush=True,
        )
    return results


@contextlib.contextmanager
def serve_cluster(
    topology: str, env: dict | None = None, ports: Ports | None = None
) -> Iterator[LocalRayCluster]:
    """This service in `topology` on a one-node local Ray (env: app/ray.env unless given)."""
    cluster = LocalRayCluster(single_node(ray_env() if env is None else env), ports)
    cluster.start()
    try:
        cluster.deploy(with_topology(serve_config(cluster.ports), topology))
        cluster.wait_running()
        yield cluster
    finally:
        cluster.stop()


def serve_service(name: str, topology: str, env: dict, seconds: int) -> dict:
    with serve_cluster(topology, env) as cluster:
        return load_series(name, cluster.serve_url, seconds)


def plain_fastapi(workers: int, seconds: int) -> dict:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(REPO / "bench"),
            "plain_fastapi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(PLAIN_PORT),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        cwd=REPO,
        env={**os.environ, "MNIST_WEIGHTS": str(WEIGHTS)},
    )
    url = f"http://127.0.0.1:{PLAIN_PORT}"
    try:
        for _ in range(100):
            try:
                requests.get(url + "/docs", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        return load_series(f"plain FastAPI, {workers} worker(s)", url, seconds)
    finally:
        server.terminate()
        server.wait(10)


def table(figures: dict, modes: list[str]) -> str:
    """One Markdown table: img/s and p50/p99 per load, ratios to the 2-worker peer."""
    limit = figures["raw_model"]["img_s"]
    peers = [f"plain-{w}w" for w in PLAIN_WORKERS]
    columns = [*peers, *modes]
    lines = [
        f"raw model limit: {limit:,.0f} img/s ({figures['raw_model']['threads']} threads, "
        f"batch {figures['raw_model']['batch_size']}); cells: img/s, p50 / p99 ms, ratio to plain-2w",
        "",
        "| load (format ximages/clients) | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for key in figures[peers[-1]]:
        base = figures[peers[-1]][key]["img_s"]
        cells = []
        for column in columns:
            r = figures[column][key]
            errors = r["non_2xx"] + r["socket_errors"]
            cells.append(
                f"{r['img_s']:,.0f}, {r['p50_us'] / 1e3:.1f} / {r['p99_us'] / 1e3:.0f} ms, "
                f"{r['img_s'] / base:.2f}x" + (f", {errors} errors" if errors else "")
            )
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    raw64 = [k for k in figures[peers[-1]] if " x64/" in k]
    for mode in modes:
        best = max(figures[mode][k]["img_s"] for k in raw64)
        lines.append(f"\n{mode}: 64-image raw requests peak at {best / limit:.2f}x the raw model limit")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run")
    parser.add_argument(
        "--modes", nargs="+", default=["serve-fused", "serve-composed"], choices=list(SERVICE_MODES)
    )
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args()

    print("raw model (in process):", flush=True)
    figures = {"raw_model": raw_model()}
    for workers in PLAIN_WORKERS:
        print(f"plain FastAPI + uvicorn, {workers} worker(s), one torch thread each:", flush=True)
        figures[f"plain-{workers}w"] = plain_fastapi(workers, args.seconds)
    for mode in args.modes:
        topology, env = SERVICE_MODES[mode]
        print(f"{mode}: this service on Ray Serve, {topology}, env {env or '(none)'}:", flush=True)
        figures[mode] = serve_service(mode, topology, env, args.seconds)
    print("\n" + table(figures, args.modes))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
