"""`make run`: it starts again after a hard stop (SIGKILL of its whole process group), NVIDIA's Triton
clients classify with their defaults against it, and it serves a model from an object store
(MODEL_URI, MODEL_VERSION) with the version on every answer. Each run is stopped a user's way
(Ctrl-C, `timeout`'s SIGTERM to the group, `kill` of make's PID after a background start) and
must leave nothing behind.

What a killed run leaves behind keeps answering on :8000 (its proxy reloads HAProxy) until the
next run ends it, which happens only after `make run` has checked the model: an answer counts
only once the listener belongs to the run under test (`clusterkit.serverun` records its tag)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import psutil
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from test_triton_clients import accuracy

from clusterkit.localray import REPO, WEIGHTS
from clusterkit.poll import wait_for
from clusterkit.processes import describe, tagged
from clusterkit.serverun import STATE
from mnist_serve.config import DEPLOYMENTS
from mnist_serve.signature import INPUT

URL = "http://127.0.0.1:8000"
PORTS = (8000, 8404, 9101)  # serve and Ray's HAProxy stats/metrics defaults, as `make run` uses them


class Run(subprocess.Popen):
    """`make run`, in a process group of its own, as a terminal would give it; `background`: with
    SIGINT ignored, as a script's `make run &` starts it."""

    def __init__(self, log, *make_args: str, env: dict[str, str] | None = None, background: bool = False):
        self.previous_tag = run_tag()
        super().__init__(
            ["make", "--no-print-directory", "run", *make_args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None,
        )

    def serving(self) -> bool:
        """Whether every listener on the serve port is a process of this run."""
        tag = run_tag()
        if tag in (None, self.previous_tag):
            return False
        serving = {pid for port, pid in listeners(all_pids=True) if port == PORTS[0]}
        ours = {proc.pid for proc in tagged(tag)}  # after: a HAProxy forked meanwhile is in it
        strangers = [describe(psutil.Process(pid)) for pid in serving - ours if psutil.pid_exists(pid)]
        assert not strangers, f"answering on :{PORTS[0]} for another run: {strangers}"
        return bool(serving)


def run_tag() -> str | None:
    return json.loads(STATE.read_text())["tag"] if STATE.is_file() else None


CTRL_C = (os.killpg, signal.SIGINT)  # a terminal: SIGINT to the foreground process group
TIMEOUT = (os.killpg, signal.SIGTERM)  # `timeout`, systemd's control-group kill: SIGTERM to the group
KILL_PID = (os.kill, signal.SIGTERM)  # `kill <pid>`, an IDE's stop button: SIGTERM to make alone


def stop(run: Run, how=CTRL_C) -> None:
    """Stop `run` as a user would; Ray must stop cleanly and nothing of the run may be left."""
    tag = run_tag()
    send, signum = how
    send(run.pid, signum)
    run.wait(timeout=90)
    left = [describe(proc) for proc in tagged(tag)]
    assert not left, f"left running after {signal.Signals(signum).name}: {left}"
    assert not listeners(), f"still listening after {signal.Signals(signum).name}: {listeners()}"


def wait_answering(run: Run, images, timeout_s: float = 180) -> requests.Response:
    """The first 200 to raw `images` at /predict from `run` (HAProxy reloads while the app comes up)."""
    replies = []

    def answered() -> bool:
        if not run.serving():
            return False
        try:
            reply = requests.post(
                URL + "/predict",
                data=images.tobytes(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=10,
            )
        except requests.RequestException:  # not up yet, or starting
            return False
        replies.append(reply)
        return reply.status_code == 200

    def running() -> None:
        assert run.poll() is None, f"make run exited with {run.returncode}"

    wait_for("make run answering /predict", answered, timeout_s, abort=running)
    return replies[-1]


def replicas_running() -> set[str]:
    """The deployments of app mnist with a replica among this run's processes (Ray titles each
    replica's process `ray::ServeReplica:<app>:<deployment>`, with `.<method>` while it runs one)."""
    titles = []
    for proc in tagged(run_tag()):
        try:
            titles.append(" ".join(proc.cmdline()))
        except psutil.NoSuchProcess:  # a Ray worker that exited since it was listed
            pass
    return {m[1] for title in titles if (m := re.match(r"ray::ServeReplica:mnist:(\w+)", title))}


def listeners(all_pids: bool = False):
    """{port: pid} of what listens on PORTS; every (port, pid) pair when `all_pids` (a reloading
    HAProxy has two processes on one port)."""
    pairs = {
        (c.laddr.port, c.pid)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in PORTS
    }
    return pairs if all_pids else dict(pairs)


def test_run_starts_again_after_its_process_group_is_killed(tmp_path, mnist_test, report):
    if not WEIGHTS.is_file():
        pytest.fail(f"no trained weights at {WEIGHTS}: run `make model` (make test does)")
    assert not listeners(), f"ports {PORTS} must be free for this test: {listeners()}"
    with (tmp_path / "first.log").open("w") as log:
        first = Run(log)
    images, labels = mnist_test.images[:20], mnist_test.labels[:20]
    try:
        wait_answering(first, images)
        time.sleep(5)  # HAProxy reloads as the app settles: kill after that, as a user would
        held = listeners()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    time.sleep(2)
    left = {port: pid for port, pid in listeners().items() if psutil.pid_exists(pid)}
    report(f"after SIGKILL of make run's group, still listening: {left or 'nothing'} (before: {held})")

    with (tmp_path / "second.log").open("w") as log:
        second = Run(log)
    try:
        reply = wait_answering(second, images)
        assert (reply.json()["labels"] == labels).mean() >= 0.9
    finally:
        stop(second)
    # A leftover may also exit by itself once Ray's processes around it are gone.
    output = (tmp_path / "second.log").read_text()
    ended = sorted(pid for pid in set(left.values()) if f"pid {pid} " in output)
    report(f"leftovers the next make run ended: {ended or 'none'} (any other had exited by itself)")
    assert not [pid for pid in left.values() if psutil.pid_exists(pid)], "a leftover outlived the next run"


def test_triton_clients_classify_with_their_defaults(tmp_path, mnist_test, report):
    """The README's promise: tritonclient.http (binary tensors) on :8000 and tritonclient.grpc on
    :9000, as a user points them at `make run`, on the model's declared input; and the topology it
    serves by default, fused (one deployment: the model in the Ingress)."""
    assert not listeners(), f"ports {PORTS} must be free for this test: {listeners()}"
    with (tmp_path / "run.log").open("w") as log:
        run = Run(log)
    try:
        wait_answering(run, mnist_test.images[:10])
        assert replicas_running() == set(DEPLOYMENTS["fused"]) == {"Ingress"}
        with httpclient.InferenceServerClient("127.0.0.1:8000") as http:
            report("make run, " + accuracy("http", http, mnist_test, INPUT.datatype, "image"))
        with grpcclient.InferenceServerClient("127.0.0.1:9000") as grpc:
            report("make run, " + accuracy("grpc", grpc, mnist_test, INPUT.datatype, "image"))
    finally:
        stop(run, TIMEOUT)


def test_run_serves_a_model_from_s3_with_its_version(tmp_path, s3_server, mnist_test, report):
    assert not listeners(), f"ports {PORTS} must be free for this test: {listeners()}"
    client = s3_server.client()
    client.create_bucket(Bucket="mnist-models")
    client.upload_file(str(WEIGHTS), "mnist-models", "v7/mnist_cnn.pt")
    images, labels = mnist_test.images[:1000], mnist_test.labels[:1000]
    # The object store's endpoint and credentials come from the environment, as on a cluster.
    env = s3_server.env | {"MNIST_SERVE_MODEL_CACHE": str(tmp_path / "model-cache")}
    with (tmp_path / "run.log").open("w") as log:
        run = Run(
            log, "MODEL_URI=s3://mnist-models/v7/mnist_cnn.pt", "MODEL_VERSION=7", env=env, background=True
        )
    try:
        wait_answering(run, images[:10])
        replies = [
            requests.post(
                URL + "/predict",
                data=images[i : i + 250].tobytes(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=30,
            )
            for i in range(0, len(images), 250)
        ]
    finally:
        stop(run, KILL_PID)
    assert all(r.status_code == 200 for r in replies), [r.text[:200] for r in replies if r.status_code != 200]
    assert {r.headers["x-model-version"] for r in replies} == {"7"}
    predicted = np.concatenate([r.json()["labels"] for r in replies])
    accuracy = float((predicted == labels).mean())
    report(f"make run MODEL_URI=s3://... (moto) MODEL_VERSION=7: {accuracy:.2%} of 1000, all version 7")
    assert accuracy >= 0.99
