"""The SLO gate: read a Locust run's CSV stats, compare with thresholds, exit non-zero naming
every SLO that failed.

    python loadtest/slo.py results/locust --slo loadtest/slo.yaml [--p99-ms 500 ...]

HTTP rows (every request type but CHECK) give the failure ratio, the throughput and the
latency percentiles; for latency the slowest endpoint counts, so the bound holds for each.
CHECK rows (the locustfile's label checks, one per digit) give the share of wrong labels.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

# name -> (what it measures, True when the measured value must stay at or below the bound)
SLOS = {
    "max_failure_ratio": ("HTTP failures / requests", True),
    "max_wrong_label_ratio": ("wrong labels / checked digits", True),
    "p95_ms": ("p95 latency of the slowest endpoint, ms", True),
    "p99_ms": ("p99 latency of the slowest endpoint, ms", True),
    "min_rps": ("HTTP requests per second", False),
}


@dataclass(frozen=True)
class Measured:
    requests: int
    failure_ratio: float
    wrong_label_ratio: float
    p95_ms: float
    p99_ms: float
    rps: float

    def value(self, slo: str) -> float:
        return {
            "max_failure_ratio": self.failure_ratio,
            "max_wrong_label_ratio": self.wrong_label_ratio,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "min_rps": self.rps,
        }[slo]


def measure(stats_csv: Path) -> Measured:
    rows = [r for r in csv.DictReader(stats_csv.open()) if r["Name"] != "Aggregated"]
    http = [r for r in rows if r["Type"] != "CHECK"]
    checks = [r for r in rows if r["Type"] == "CHECK"]
    if not http:
        raise SystemExit(f"{stats_csv}: no requests were made")
    requests = sum(int(r["Request Count"]) for r in http)
    checked = sum(int(r["Request Count"]) for r in checks)
    return Measured(
        requests=requests,
        failure_ratio=sum(int(r["Failure Count"]) for r in http) / requests,
        wrong_label_ratio=sum(int(r["Failure Count"]) for r in checks) / checked if checked else 0.0,
        p95_ms=max(float(r["95%"]) for r in http if int(r["Request Count"])),
        p99_ms=max(float(r["99%"]) for r in http if int(r["Request Count"])),
        rps=sum(float(r["Requests/s"]) for r in http),
    )


def gate(measured: Measured, thresholds: dict[str, float]) -> list[str]:
    """A line per SLO; failed ones start with FAIL."""
    lines = []
    for slo, bound in thresholds.items():
        what, at_most = SLOS[slo]
        value = measured.value(slo)
        ok = value <= bound if at_most else value >= bound
        sign = "<=" if at_most else ">="
        lines.append(f"{'pass' if ok else 'FAIL'}  {slo}: {value:.4g} {sign} {bound:g}  ({what})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", type=Path, help="Locust's --csv prefix (reads <prefix>_stats.csv)")
    parser.add_argument("--slo", type=Path, help="YAML file of thresholds")
    for slo, (what, _) in SLOS.items():
        parser.add_argument(f"--{slo.replace('_', '-')}", type=float, help=what)
    args = parser.parse_args(argv)

    thresholds = yaml.safe_load(args.slo.read_text()) if args.slo else {}
    unknown = set(thresholds) - set(SLOS)
    if unknown:
        parser.error(f"{args.slo}: unknown SLOs {sorted(unknown)}; known: {sorted(SLOS)}")
    thresholds |= {slo: getattr(args, slo) for slo in SLOS if getattr(args, slo) is not None}
    if not thresholds:
        parser.error("no SLO given: pass --slo FILE or a threshold flag")

    measured = measure(Path(f"{args.prefix}_stats.csv"))
    lines = gate(measured, thresholds)
    print(f"SLO gate over {measured.requests} requests:")
    print("\n".join(f"  {line}" for line in lines))
    failed = [line.split()[1].rstrip(":") for line in lines if line.startswith("FAIL")]
    if failed:
        print(f"SLO failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
