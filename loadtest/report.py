"""Plots of a Locust run: throughput, latency percentiles and failures over time, and the Serve
replica count when the run recorded it (--ray-dashboard).

    python loadtest/report.py results/locust      # writes results/locust_*.png
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def history(prefix: Path) -> dict[float, dict[str, float]]:
    """Per second of the run: HTTP requests/s and failures/s (summed over endpoints), the slowest
    endpoint's p50/p95/p99, wrong labels/s, and users. Needs Locust's --csv-full-history."""
    rows = [
        r for r in csv.DictReader(Path(f"{prefix}_stats_history.csv").open()) if r["Name"] != "Aggregated"
    ]
    start = min(int(r["Timestamp"]) for r in rows)
    out: dict[float, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        point = out[int(r["Timestamp"]) - start]
        point["users"] = float(r["User Count"])
        if r["Type"] == "CHECK":
            point["wrong/s"] += float(r["Failures/s"])
            continue
        point["requests/s"] += float(r["Requests/s"])
        point["failures/s"] += float(r["Failures/s"])
        for p in ("50%", "95%", "99%"):
            if r[p] != "N/A":
                point[p] = max(point[p], float(r[p]))
    return dict(sorted(out.items()))


def replicas(prefix: Path) -> dict[str, list[tuple[float, int]]]:
    path = Path(f"{prefix}_replicas.csv")
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    if path.is_file():
        for r in csv.DictReader(path.open()):
            series[r["deployment"]].append((float(r["elapsed_s"]), int(r["running_replicas"])))
    return series


def plot(prefix: Path) -> list[Path]:
    points = history(prefix)
    t = list(points)
    written = []

    def save(name: str, figure) -> None:
        path = Path(f"{prefix}_{name}.png")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)

    figure, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [points[s]["requests/s"] for s in t], label="requests/s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("requests/s")
    users = ax.twinx()
    users.plot(t, [points[s]["users"] for s in t], color="grey", linestyle="--", label="users")
    users.set_ylabel("users")
    users.set_ylim(0, max(points[s]["users"] for s in t) * 1.1 + 1)
    ax.set_title("Throughput")
    save("throughput", figure)

    figure, ax = plt.subplots(figsize=(8, 4))
    for p in ("50%", "95%", "99%"):
        ax.plot(t, [points[s].get(p, float("nan")) for s in t], label=f"p{p[:-1]}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("ms (slowest endpoint)")
    ax.set_title("Latency percentiles")
    ax.legend()
    save("latency", figure)

    figure, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [points[s]["failures/s"] for s in t], label="HTTP failures/s", color="red")
    ax.plot(t, [points[s]["wrong/s"] for s in t], label="wrong labels/s", color="orange")
    ax.set_xlabel("seconds")
    ax.set_title("Failures")
    ax.legend()
    save("failures", figure)

    if series := replicas(prefix):
        figure, ax = plt.subplots(figsize=(8, 4))
        for deployment, values in sorted(series.items()):
            ax.step([v[0] for v in values], [v[1] for v in values], where="post", label=deployment)
        ax.set_xlabel("seconds")
        ax.set_ylabel("running replicas")
        ax.set_title("Serve replicas")
        ax.legend()
        save("replicas", figure)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", type=Path, help="Locust's --csv prefix")
    for path in plot(parser.parse_args().prefix):
        print(path)


if __name__ == "__main__":
    main()
