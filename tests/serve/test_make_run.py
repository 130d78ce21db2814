"""`make run` starts again after a hard stop: SIGKILL of its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
import requests

from clusterkit.localray import REPO, WEIGHTS

URL = "http://127.0.0.1:8000"
PORTS = (8000, 8404, 9101)  # serve and Ray's HAProxy stats/metrics defaults, as `make run` uses them


def start(log) -> subprocess.Popen:
    # `make run`, in a process group of its own, as a terminal would give it.
    return subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(run: subprocess.Popen) -> None:
    """Ctrl-C: Ray stops cleanly and the runner ends anything that outlived it."""
    os.killpg(run.pid, signal.SIGINT)
    run.wait(timeout=90)


def wait_answering(run: subprocess.Popen, images, timeout_s: float = 180) -> requests.Response:
    """The first 200 to raw `images` at /predict (HAProxy reloads while the app comes up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, f"make run exited with {run.returncode}"
        try:
            reply = requests.post(
                URL + "/predict",
                data=images.tobytes(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=10,
            )
            if reply.status_code == 200:
                return reply
        except requests.RequestException:  # not up yet, or starting
            pass
        time.sleep(1)
    raise TimeoutError(f"not answering after {timeout_s} s")


def listeners() -> dict[int, int]:
    return {
        c.laddr.port: c.pid
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in PORTS
    }


def test_run_starts_again_after_its_process_group_is_killed(tmp_path, mnist_test, report):
    if not WEIGHTS.is_file():
        pytest.fail(f"no trained weights at {WEIGHTS}: run `make model` (make test does)")
    assert not listeners(), f"ports {PORTS} must be free for this test: {listeners()}"
    with (tmp_path / "first.log").open("w") as log:
        first = start(log)
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
        second = start(log)
    try:
        reply = wait_answering(second, images)
        assert (reply.json()["labels"] == labels).mean() >= 0.9
    finally:
        stop(second)
    output = (tmp_path / "second.log").read_text()
    for pid in set(left.values()):
        assert f"pid {pid} " in output, output[-2000:]
    assert not listeners(), f"still listening after Ctrl-C: {listeners()}"
