"""The OpenAPI document tells the truth: schemathesis, with all its checks, against the running
service finds nothing (undocumented statuses, schema-valid requests refused or schema-invalid
ones served, responses that do not match their schema, 5xx). Seeded, so that a run is
repeatable."""

import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# Examples per operation and phase (about 1,500 requests in all, 4 minutes): every documented
# form of every body is reached.
EXAMPLES = 100


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
            str(EXAMPLES),
            "--seed",
            "0",
            "--generation-deterministic",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = [line for line in run.stdout.splitlines() if "generated" in line]
    report(f"schemathesis (all checks): {summary[-1].strip() if summary else run.stdout[-200:]}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
