"""The OpenAPI document tells the truth: schemathesis, with all its checks, against the running
service finds nothing (undocumented statuses, schema-valid requests refused, responses that do
not match their schema, 5xx). Seeded, so that a run is repeatable."""

import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_nothing(base_url, report, tmp_path):
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "0",
            "--generation-deterministic",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = [line for line in run.stdout.splitlines() if "generated" in line]
    report(f"schemathesis (all checks): {summary[-1].strip() if summary else run.stdout[-200:]}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
