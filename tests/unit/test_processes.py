"""Processes found by their environment tag: orphans included, strangers never."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import psutil
import pytest

from clusterkit.poll import wait_for
from clusterkit.processes import TAG, end_tagged, tagged


def orphan(tag: str | None) -> int:
    """A `sleep` whose parent has exited (reparented, as Ray's HAProxy is when its node dies)."""
    env = {**os.environ, TAG: tag} if tag else {k: v for k, v in os.environ.items() if k != TAG}
    out = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


@pytest.fixture
def prefix():
    return f"test-{uuid.uuid4().hex}/"


def test_an_orphan_is_found_and_ended_by_its_tag(prefix):
    pids = [orphan(prefix + "a/"), orphan(prefix + "b/")]
    stranger = orphan(None)
    try:
        assert sorted(p.pid for p in tagged(prefix)) == sorted(pids)
        assert [p.pid for p in tagged(prefix + "a/")] == pids[:1]
        ended = end_tagged(prefix, graceful=False)
        assert len(ended) == 2 and all("sleep 300" in line for line in ended)
        time.sleep(0.2)
        assert not tagged(prefix)
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
        assert psutil.Process(stranger).is_running(), "an untagged process was ended"
    finally:
        psutil.Process(stranger).kill()


def test_nothing_tagged_ends_nothing(prefix):
    assert end_tagged(prefix) == []


def test_an_empty_prefix_is_refused():
    with pytest.raises(AssertionError):
        end_tagged("")


def test_an_untagged_child_of_a_tagged_process_is_found(prefix):
    # Ray's Python workers read as untagged (setproctitle overwrites their environ): found
    # as children of the raylet, which is tagged.
    parent = subprocess.Popen(
        ["sh", "-c", "env -i sleep 300 & wait"], env={**os.environ, TAG: prefix}, start_new_session=True
    )
    try:
        sleeping = lambda: [c.name() for c in psutil.Process(parent.pid).children()] == ["sleep"]  # noqa: E731
        wait_for("sleep started", sleeping, 10, 0.05)
        (child,) = psutil.Process(parent.pid).children()
        assert TAG not in child.environ()
        assert {p.pid for p in tagged(prefix)} == {parent.pid, child.pid}
        end_tagged(prefix)
        assert parent.wait(timeout=5) is not None and not child.is_running()
    finally:
        end_tagged(prefix, graceful=False)
        parent.wait(timeout=5)
