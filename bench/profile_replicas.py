"""bench/profile_replicas.py: where the service's CPU goes under load, per replica, with py-spy.

Starts the service (TOPOLOGY fused|composed) on a local Ray as `make bench` does, drives it
with wrk on /predict (FORMAT json|raw) or with perf_analyzer over the Open Inference Protocol
(FORMAT oip-http|oip-grpc, single images, as `make bench-oip` sends them), CLIENTS at once,
samples every replica with `py-spy record` meanwhile and prints each one's top functions by own
time and by time including callees, and what the load client measured.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from bench import serve_cluster, wrk
from clusterkit import perf_analyzer
from mnist_serve import client, data
from oip_bench import DIGITS, RAY_PORTS, measure, wait_ready


def top(collapsed: Path, count: int) -> str:
    """The functions that take the most samples in py-spy's collapsed stacks."""
    own, total, samples = collections.Counter(), collections.Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            total[frame] += int(n)
    rows = [f"    {n / samples:6.1%} own   {frame}" for frame, n in own.most_common(count)]
    rows += [f"    {n / samples:6.1%} total {frame}" for frame, n in total.most_common(count * 2)]
    return f"  {samples} samples\n" + "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default="fused", choices=["fused", "composed"])
    parser.add_argument("--format", default="json", choices=["json", "raw", "oip-http", "oip-grpc"])
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    images = data.load("test").images
    measured = {}
    with serve_cluster(args.topology, ports=RAY_PORTS) as cluster, tempfile.TemporaryDirectory() as out:
        deployments = cluster.details()["applications"]["mnist"]["deployments"]
        replicas = {
            f"{name} {i}": r["pid"] for name, d in deployments.items() for i, r in enumerate(d["replicas"])
        }
        if args.format.startswith("oip-"):
            perf_analyzer.build()
            (Path(out) / "digits.json").write_text(
                perf_analyzer.input_data(images[:DIGITS].astype(np.float32) / 255)
            )
            urls = {"http": cluster.serve_url.removeprefix("http://"), "grpc": cluster.grpc_url}
            wait_ready(urls["http"], urls["grpc"])
            protocol = args.format.removeprefix("oip-")
            # perf_analyzer's quick windows (3 x 2 s) after its warm-up requests: about as long as py-spy.
            cell = (protocol, 1, args.clients)
            load = threading.Thread(
                target=lambda: measured.update(
                    measure(Path(out), "profile", urls[protocol], cell, quick=True)
                )
            )
        else:
            request = client.encode(args.format, images[:1])
            wrk(cluster.serve_url, request, 8, 2)  # warm up
            load = threading.Thread(
                target=wrk, args=(cluster.serve_url, request, args.clients, args.seconds + 2)
            )
        load.start()
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--rate", "200", "--format", "raw"]
        spies = {
            name: subprocess.Popen(
                [*spy, "--nonblocking", "--pid", str(pid), "--duration", str(args.seconds)]
                + ["--output", f"{out}/{pid}.txt"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in replicas.items()
        }
        for spy in spies.values():
            spy.wait()
        load.join()
        for name, pid in replicas.items():
            print(f"{name} (pid {pid}), {args.format}, {args.clients} clients:")
            print(top(Path(f"{out}/{pid}.txt"), args.top))
    if measured:
        print(f"perf_analyzer: {measured}")
    return 1 if "error" in measured else 0


if __name__ == "__main__":
    sys.exit(main())
