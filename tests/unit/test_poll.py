"""The one poll helper: what it returns, how it fails."""

from __future__ import annotations

import itertools
import time

import pytest

from clusterkit.poll import wait_for


def test_returns_the_seconds_until_the_check_held():
    calls = itertools.count()
    took = wait_for("the third call", lambda: next(calls) >= 2, timeout=5, interval=0.05)
    assert 0.1 <= took < 1


def test_times_out_naming_what_it_waited_for_and_the_state_then():
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0 s waiting for a reply \(now 7\)"):
        wait_for(lambda: "a reply (now 7)", lambda: False, timeout=0.3, interval=0.05)
    assert 0.3 <= time.monotonic() - started < 1


def test_abort_ends_the_wait_at_once():
    def died() -> None:
        raise RuntimeError("the server exited")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the server exited"):
        wait_for("a reply", lambda: False, timeout=60, abort=died)
    assert time.monotonic() - started < 1
