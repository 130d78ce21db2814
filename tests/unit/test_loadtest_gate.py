"""The load run's SLO gate and shapes, on hand-made Locust stats (no load needed)."""

from __future__ import annotations

import csv

import pytest

import shapes
import slo

COLUMNS = ["Type", "Name", "Request Count", "Failure Count", "Requests/s", "95%", "99%"]


def stats(tmp_path, rows: list[tuple]) -> str:
    prefix = tmp_path / "run"
    with open(f"{prefix}_stats.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return str(prefix)


HEALTHY = [
    ("POST", "raw /predict", 1000, 0, 50.0, 40, 80),
    ("POST", "json /predict", 500, 0, 25.0, 60, 120),
    ("CHECK", "raw labels", 1000, 8, 50.0, 40, 80),
    ("CHECK", "json labels", 500, 4, 25.0, 60, 120),
    # Locust's own total mixes HTTP and CHECK rows: the gate must ignore it.
    ("", "Aggregated", 3000, 12, 150.0, 60, 120),
]


def test_a_healthy_run_passes_and_reads_the_right_rows(tmp_path):
    prefix = stats(tmp_path, HEALTHY)
    measured = slo.measure(slo.Path(f"{prefix}_stats.csv"))
    assert measured.requests == 1500
    assert measured.failure_ratio == 0
    assert measured.wrong_label_ratio == pytest.approx(12 / 1500)
    assert (measured.p95_ms, measured.p99_ms, measured.rps) == (60, 120, 75)
    assert slo.main([prefix, "--slo", "loadtest/slo.yaml"]) == 0


@pytest.mark.parametrize(
    ("rows", "flags", "failed"),
    [
        (HEALTHY[:1] + [("POST", "png /predict", 10, 1, 1.0, 30, 30)], [], "max_failure_ratio"),
        (
            [("POST", "raw /predict", 100, 0, 5.0, 40, 80), ("CHECK", "raw labels", 100, 5, 5.0, 0, 0)],
            [],
            "max_wrong_label_ratio",
        ),
        (HEALTHY, ["--p95-ms", "50"], "p95_ms"),
        (HEALTHY, ["--p99-ms", "100"], "p99_ms"),
        (HEALTHY, ["--min-rps", "100"], "min_rps"),
    ],
    ids=["an HTTP error", "too many wrong labels", "slow p95", "slow p99", "too little throughput"],
)
def test_the_gate_fails_naming_the_slo(tmp_path, capsys, rows, flags, failed):
    assert slo.main([stats(tmp_path, rows), "--slo", "loadtest/slo.yaml", *flags]) == 1
    assert capsys.readouterr().err.strip() == f"SLO failed: {failed}"


def test_unknown_slo_names_are_refused(tmp_path):
    bad = tmp_path / "slo.yaml"
    bad.write_text("p90_ms: 100\n")
    with pytest.raises(SystemExit):
        slo.main([stats(tmp_path, HEALTHY), "--slo", str(bad)])


def test_shapes():
    assert [shapes.users_at("ramp", t, 50, 20) for t in (0, 9, 10, 25, 49)] == [4, 4, 8, 12, 20]
    assert [shapes.users_at("spike", t, 60, 20) for t in (0, 19, 20, 39, 40)] == [5, 5, 20, 20, 5]
    assert shapes.users_at("steady", 30, 60, 8) == 8
    assert shapes.users_at("steady", 60, 60, 8) is None
