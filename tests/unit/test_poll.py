"""The one poll helper: what it returns, how it fails."""

from __future__ import annotations

import itertools
import time

import pytest

from clusterkit.kube.release import unserved
from clusterkit.poll import Sampler, wait_for


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


def test_a_sampler_keeps_each_value_with_its_time_until_closed():
    values = itertools.count()
    started = time.monotonic()
    with Sampler(lambda: next(values), interval=0.05) as sampler:
        time.sleep(0.5)
        closing = time.monotonic()
    kept = list(sampler.samples)
    time.sleep(0.2)
    assert sampler.samples == kept, "sampled after it was closed"
    assert [value for _, value in kept] == list(range(len(kept)))
    assert 6 <= len(kept) <= 12
    times = [at for at, _ in kept]
    assert started <= times[0] < times[-1] <= time.monotonic() and times == sorted(times)
    assert times[-1] >= closing, "no sample taken at the close"


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([2, 2, 1], ""),
        ([2, 0, 0, 1, 0, 2], "no ready serve endpoint +1.0 to +3.0 s, +4.0 to +5.0 s"),
        ([1, 0], "no ready serve endpoint +1.0 s to the end"),
    ],
)
def test_unserved_names_each_span_without_a_ready_endpoint(counts, expected):
    samples = [(100.0 + i, count) for i, count in enumerate(counts)]
    assert unserved(samples, since=100.0) == expected
