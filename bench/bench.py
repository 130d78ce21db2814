"""make bench: the raw model, this service and a plain FastAPI process, side by side.

Prints images/s and p50/p95/p99 latency for single-image requests at 1, 32
and 128 concurrent clients (JSON and raw bytes), and the ratios of the
service to the model's limit and to plain FastAPI. Load comes from wrk
(C, one thread) so the client takes as little of the machine as possible.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import torch

from clusterkit.localray import WEIGHTS, LocalRayCluster, ray_env, serve_config, single_node
from mnist_serve import client, data
from mnist_serve.preprocessing import to_model_input
from mnist_serve.weights import load_model

REPO = Path(__file__).resolve().parents[1]


CLIENTS = (1, 32, 128)
FORMATS = ("json", "raw")
# What we ship (app/ray.env: throughput-optimised, HAProxy) and Ray's defaults.
SERVICE_MODES = {"serve": ray_env(), "serve-ray-defaults": {}}
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


def load_series(name: str, url: str, seconds: int) -> dict:
    image = data.load("test").images[:1]
    results = {}
    for fmt in FORMATS:
        request = client.encode(fmt, image)
        wrk(url, request, 8, 2)  # warm up
        for clients in CLIENTS:
            r = wrk(url, request, clients, seconds)
            results[f"{fmt}/{clients}"] = r
            print(
                f"  {name:<18} {fmt:<4} {clients:>3} clients: {r['img_s']:7.0f} img/s  "
                f"p50 {r['p50_us'] / 1e3:6.1f} ms  p95 {r['p95_us'] / 1e3:6.1f} ms  "
                f"p99 {r['p99_us'] / 1e3:6.1f} ms  errors {r['non_2xx'] + r['socket_errors']}",
                flush=True,
            )
    return results


def serve_service(name: str, env: dict, seconds: int) -> dict:
    cluster = LocalRayCluster(single_node(env))
    cluster.start()
    try:
        cluster.deploy(serve_config(cluster.ports))
        cluster.wait_running()
        return load_series(name, cluster.serve_url, seconds)
    finally:
        cluster.stop()


def plain_fastapi(seconds: int) -> dict:
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
        return load_series("plain FastAPI", url, seconds)
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run")
    parser.add_argument("--modes", nargs="+", default=list(SERVICE_MODES), choices=list(SERVICE_MODES))
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args()

    print("raw model (in process):", flush=True)
    figures = {"raw_model": raw_model()}
    print("plain FastAPI + uvicorn, one process, one torch thread:", flush=True)
    figures["plain_fastapi"] = plain_fastapi(args.seconds)
    for mode in args.modes:
        print(f"{mode}: this service on Ray Serve, env {SERVICE_MODES[mode] or '(none)'}:", flush=True)
        figures[mode] = serve_service(mode, SERVICE_MODES[mode], args.seconds)

    limit = figures["raw_model"]["img_s"]
    print(
        f"\nratios (raw model limit {limit:.0f} img/s, "
        f"{figures['raw_model']['threads']} threads, batch {figures['raw_model']['batch_size']}):"
    )
    print(f"  {'load':<10}" + "".join(f"{m + ' / plain':>30}{m + ' / model':>30}" for m in args.modes))
    for key in figures["plain_fastapi"]:
        plain = figures["plain_fastapi"][key]["img_s"]
        row = "".join(
            f"{figures[m][key]['img_s'] / plain:>30.2f}{figures[m][key]['img_s'] / limit:>30.2f}"
            for m in args.modes
        )
        print(f"  {key:<10}{row}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
