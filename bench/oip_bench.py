"""make bench-oip: this service against a KServe ModelServer over the Open Inference Protocol, as
NVIDIA's perf_analyzer (Triton's load client, clusterkit/perf_analyzer.py) measures them.

The peers serve the same weights with the same preprocessing: this service, fused and composed
(app/serve_config.yaml and app/ray.env on a one-node local Ray, as bench/bench.py starts it), and
bench/kserve_peer.py under KServe's own ModelServer, from .venv-kserve (`make kserve-peer`). One
peer runs at a time. perf_analyzer sends real test digits (FP32 in [0, 1]) over HTTP and gRPC, 1
or 64 images per request, from 1, 8, 32 and 64 concurrent clients, and stops on the first request
refused. One Markdown table: images/s and p50 latency per peer, and each topology's images/s as a
ratio to KServe's. `--quick` (concurrency 8, three 2 s windows per cell) checks that everything
runs; its figures are not a benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tritonclient.grpc
import tritonclient.http
from tritonclient.utils import InferenceServerException

from bench import SERVICE_MODES, serve_cluster
from clusterkit import perf_analyzer
from clusterkit.localray import Ports, serve_config
from clusterkit.poll import wait_for
from clusterkit.processes import end_group
from mnist_serve import data
from mnist_serve.config import Batching, Limits
from mnist_serve.protocol import oip
from mnist_serve.signature import MODEL_NAME

REPO = Path(__file__).resolve().parents[1]
KSERVE_PYTHON = REPO / ".venv-kserve" / "bin" / "python"

PROTOCOLS = ("http", "grpc")
IMAGES = (1, 64)
CONCURRENCY = (1, 8, 32, 64)
QUICK_CONCURRENCY = (8,)
# Three 2 s windows, reported however much they differ (max/min up to 101; an empty one still fails).
QUICK_WINDOWS = ["--measurement-interval", "2000", "--max-trials", "3", "--stability-percentage", "10000"]
# perf_analyzer sends `-b 64` as 64 consecutive steps of the input data, so it holds more.
DIGITS = 256
# Every port in 28200-28299: clear of `make run`, the tests' local Ray (Ports()) and bench/bench.py.
RAY_PORTS = Ports(
    gcs=28201,
    dashboard=28202,
    client=28203,
    serve=28204,
    grpc=28205,
    nodes=28210,
    direct_ingress_http=28230,
    direct_ingress_grpc=28250,
    direct_ingress_size=20,
)
KSERVE_HTTP, KSERVE_GRPC = 28280, 28281
# KServe's multi-process REST (uvicorn workers, one per core); its gRPC server is always one process.
KSERVE_WORKERS = 2
KSERVE = "kserve"


def cell_key(protocol: str, images: int, concurrency: int) -> str:
    return f"{protocol} x{images}/{concurrency}"


def kserve_model_config() -> dict:
    """What this service answers at /v2/models/mnist/config, less its dynamic batching: KServe runs
    each request on its own."""
    limits = Limits(**serve_config(RAY_PORTS)["applications"][0]["args"].get("limits", {}))
    config = oip.model_config(limits, Batching())
    del config["dynamic_batching"]
    return config


@contextlib.contextmanager
def service(topology: str, env: dict) -> Iterator[tuple[str, str]]:
    """This service in `topology`, ready: its (HTTP, gRPC) addresses as perf_analyzer takes them."""
    with serve_cluster(topology, env, RAY_PORTS) as cluster:
        addresses = cluster.serve_url.removeprefix("http://"), cluster.grpc_url
        wait_ready(*addresses)
        yield addresses


@contextlib.contextmanager
def kserve(workdir: Path) -> Iterator[tuple[str, str]]:
    """bench/kserve_peer.py, ready, in a session of its own (its REST workers end with it),
    logging to workdir/kserve.log."""
    config = workdir / "kserve-model-config.json"
    config.write_text(json.dumps(kserve_model_config()))
    command = [str(KSERVE_PYTHON), str(REPO / "bench" / "kserve_peer.py"), "--model_config", str(config)]
    command += ["--http_port", str(KSERVE_HTTP), "--grpc_port", str(KSERVE_GRPC)]
    command += ["--workers", str(KSERVE_WORKERS)]
    log = workdir / "kserve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def exited() -> None:
        if server.poll() is not None:
            raise RuntimeError(f"the KServe peer exited with {server.returncode}: see {log}")

    try:
        addresses = f"127.0.0.1:{KSERVE_HTTP}", f"127.0.0.1:{KSERVE_GRPC}"
        wait_ready(*addresses, abort=exited)
        yield addresses
    finally:
        end_group(server.pid)


def wait_ready(http: str, grpc: str, abort: Callable[[], None] | None = None, timeout: float = 180) -> None:
    """Until the model is ready over both protocols, as Triton's own clients ask."""
    http_client = tritonclient.http.InferenceServerClient(http)
    grpc_client = tritonclient.grpc.InferenceServerClient(grpc)

    def ready() -> bool:
        try:
            return http_client.is_model_ready(MODEL_NAME) and grpc_client.is_model_ready(MODEL_NAME)
        except (InferenceServerException, OSError):
            return False

    try:
        wait_for(f"model {MODEL_NAME} ready at {http} and {grpc}", ready, timeout, abort=abort)
    finally:
        http_client.close()
        grpc_client.close()


def measure(workdir: Path, peer: str, url: str, cell: tuple[str, int, int], quick: bool) -> dict:
    """One perf_analyzer run: images/s and p50 latency, or what stopped it."""
    protocol, images, concurrency = cell
    csv_file = f"{peer}-{protocol}-{images}-{concurrency}.csv"
    args = ["-m", MODEL_NAME, "-u", url, "-i", protocol, "-b", str(images), "--input-data", "digits.json"]
    args += ["--concurrency-range", str(concurrency), "-f", csv_file]
    # Each client a few requests first: first calls (connections, torch's first pass) are not measured.
    args += ["--warmup-request-count", str(4 * concurrency)]
    # perf_analyzer's default: 5 s windows until three in a row agree within 10% (at most 10).
    # Not --request-count for the quick run: it reports the requests over a window of whole
    # seconds, not over the time they took.
    args += QUICK_WINDOWS if quick else []
    command = perf_analyzer.command(*args, workdir=workdir)
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        lines = (run.stdout + run.stderr).strip().splitlines()
        return {"error": lines[-1] if lines else f"perf_analyzer exited with {run.returncode}"}
    (row,) = csv.DictReader((workdir / csv_file).open())
    # With -b, perf_analyzer counts inferences per image: Inferences/Second is images/s.
    return {"img_s": float(row["Inferences/Second"]), "p50_ms": int(row["p50 latency"]) / 1000}


def run_peer(workdir: Path, peer: str, addresses: tuple[str, str], cells: list, quick: bool) -> dict:
    url = dict(zip(PROTOCOLS, addresses, strict=True))
    results = {}
    for cell in cells:
        r = results[cell_key(*cell)] = measure(workdir, peer, url[cell[0]], cell, quick)
        figures = r.get("error") or f"{r['img_s']:8.0f} img/s  p50 {r['p50_ms']:6.1f} ms"
        print(f"  {peer:<16} {cell_key(*cell):<12} {figures}", flush=True)
    return results


def table(figures: dict, modes: list[str], quick: bool) -> str:
    """One Markdown table: per cell, each peer's images/s and p50, and each mode's ratio to KServe."""
    peers = [*modes, KSERVE]
    title = "quick run (--quick): a functional check, not a benchmark" if quick else "perf_analyzer"
    lines = [
        f"{title}; cells: images/s, p50 ms; ratios: images/s of this service / KServe's",
        "",
        "| protocol ximages/concurrency | " + " | ".join([*peers, *(f"{m} / kserve" for m in modes)]) + " |",
        "| --- |" + " ---: |" * (len(peers) + len(modes)),
    ]
    for key in figures[KSERVE]:
        cells = [figures[p][key] for p in peers]
        shown = [c.get("error") or f"{c['img_s']:,.0f}, {c['p50_ms']:.1f} ms" for c in cells]
        base = figures[KSERVE][key].get("img_s")
        ratios = [
            f"{figures[m][key]['img_s'] / base:.2f}x" if base and "img_s" in figures[m][key] else "-"
            for m in modes
        ]
        lines.append(f"| {key} | " + " | ".join(shown + ratios) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="concurrency 8, three 2 s windows per cell")
    parser.add_argument(
        "--modes", nargs="+", default=["serve-fused", "serve-composed"], choices=list(SERVICE_MODES)
    )
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args()

    perf_analyzer.build()  # once per pin; also points podman at clusterkit/podman.py's settings
    workdir = REPO / "bench" / "results" / f"oip-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True)
    # The first test digits, FP32 in [0, 1].
    digits = data.load("test").images[:DIGITS].astype(np.float32) / 255
    (workdir / "digits.json").write_text(perf_analyzer.input_data(digits))
    concurrency = QUICK_CONCURRENCY if args.quick else CONCURRENCY
    cells = [(p, i, c) for p in PROTOCOLS for i in IMAGES for c in concurrency]

    figures = {}
    for mode in args.modes:
        topology, env = SERVICE_MODES[mode]
        print(f"{mode}: this service on Ray Serve, {topology}, env {env or '(none)'}:", flush=True)
        with service(topology, env) as addresses:
            figures[mode] = run_peer(workdir, mode, addresses, cells, args.quick)
    print(f"{KSERVE}: {KSERVE_WORKERS} REST workers and one gRPC server, log in {workdir}:", flush=True)
    with kserve(workdir) as addresses:
        figures[KSERVE] = run_peer(workdir, KSERVE, addresses, cells, args.quick)

    print("\n" + table(figures, args.modes, args.quick))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    errors = sum("error" in r for results in figures.values() for r in results.values())
    print(f"\nperf_analyzer CSVs and logs: {workdir}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
