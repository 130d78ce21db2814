"""NVIDIA's perf_analyzer, the standard Open Inference Protocol load client, drives the service as
it is, with no shim: it reads Triton's model configuration first, then sends real test digits over
HTTP and gRPC, and stops with an error on the first request refused. Built by `make perf-analyzer`
(clusterkit/perf_analyzer.py).

Its `validation_data` cannot check the labels: it compares every output byte for byte, the
probabilities too, and only this model could say what those are. tritonclient's tests check the
answers (test_triton_clients.py)."""

from __future__ import annotations

import csv
import subprocess

import numpy as np
import pytest

from clusterkit import perf_analyzer
from mnist_serve.signature import MODEL_NAME

DIGITS = 100
CONCURRENCY = 8
REQUESTS = 400


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, mnist_test):
    """perf_analyzer's working directory: the first test digits as FP32 in [0, 1] (digits.json),
    and the same as 0–255 (unscaled.json), which the service refuses."""
    if not perf_analyzer.MARKER.exists():
        pytest.fail(f"perf_analyzer is not built in {perf_analyzer.HOME}: run `make perf-analyzer`")
    perf_analyzer.build()  # points podman at clusterkit/podman.py's runtime and ulimits
    folder = tmp_path_factory.mktemp("perf_analyzer")
    pixels = mnist_test.images[:DIGITS].astype(np.float32)
    (folder / "digits.json").write_text(perf_analyzer.input_data(pixels / 255))
    (folder / "unscaled.json").write_text(perf_analyzer.input_data(pixels))
    return folder


def perf_analyzer_run(workdir, protocol: str, url: str, data: str, batch: int = 1, csv_file: str = ""):
    args = ["-m", MODEL_NAME, "-u", url, "-i", protocol, "-b", str(batch), "--input-data", data]
    args += ["--concurrency-range", str(CONCURRENCY), "--request-count", str(REQUESTS)]
    args += ["-f", csv_file] if csv_file else []
    command = perf_analyzer.command(*args, workdir=workdir)
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def url_for(cluster, protocol: str) -> str:
    return cluster.serve_url.removeprefix("http://") if protocol == "http" else cluster.grpc_url


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_drives_the_service(cluster, workdir, protocol, batch, report):
    csv_file = workdir / f"{protocol}-{batch}.csv"
    url = url_for(cluster, protocol)
    run = perf_analyzer_run(workdir, protocol, url, "digits.json", batch, csv_file.name)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"Request count: {REQUESTS}" in run.stdout, run.stdout
    # Not its Inferences/Second: with --request-count it divides by whole seconds (make bench-oip
    # measures throughput).
    (row,) = csv.DictReader(csv_file.open())
    assert int(row["Concurrency"]) == CONCURRENCY
    report(
        f"perf_analyzer {protocol}, {batch} image(s) per request, {CONCURRENCY} clients: "
        f"{REQUESTS} requests, none refused, p50 {int(row['p50 latency']) / 1000:.1f} ms"
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_stops_on_a_refused_request(cluster, workdir, protocol):
    """The control: what the service refuses, perf_analyzer reports and exits non-zero on, so the
    runs above had no request refused."""
    run = perf_analyzer_run(workdir, protocol, url_for(cluster, protocol), "unscaled.json")
    assert run.returncode != 0
    assert "'image' holds values outside [0, 1] (min 0, max 255)" in run.stdout + run.stderr
