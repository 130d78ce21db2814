"""bench/profile_replicas.py: where the service's CPU goes under load, per replica, with py-spy.

Starts the service (TOPOLOGY fused|composed) on a local Ray as `make bench` does, drives it
with wrk (FORMAT json|raw, CLIENTS), samples every replica with `py-spy record` meanwhile and
prints each one's top functions by own time and by time including callees.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import serve_cluster, wrk
from mnist_serve import client, data


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
    parser.add_argument("--format", default="json", choices=["json", "raw"])
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    request = client.encode(args.format, data.load("test").images[:1])
    with serve_cluster(args.topology) as cluster, tempfile.TemporaryDirectory() as out:
        deployments = cluster.details()["applications"]["mnist"]["deployments"]
        replicas = {
            f"{name} {i}": r["pid"] for name, d in deployments.items() for i, r in enumerate(d["replicas"])
        }
        wrk(cluster.serve_url, request, 8, 2)  # warm up
        load = threading.Thread(target=wrk, args=(cluster.serve_url, request, args.clients, args.seconds + 2))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
