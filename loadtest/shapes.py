"""Load shapes: how many users at each moment of a run, by name.

Pure functions of (elapsed seconds, run length, peak users), so they are easy to read and test.
"""

from __future__ import annotations

import math


def steady(t: float, duration: float, peak: int) -> int:
    """The peak from the start: for SLO gates at a known load."""
    return peak


def ramp(t: float, duration: float, peak: int) -> int:
    """Five equal steps up to the peak: where does latency start to climb?"""
    return max(1, math.ceil(peak * min(5, int(t / duration * 5) + 1) / 5))


def spike(t: float, duration: float, peak: int) -> int:
    """A quarter of the peak, the full peak through the middle third, then back: for autoscaling
    (the replicas should follow up, and down again after the spike)."""
    base = max(1, peak // 4)
    return peak if duration / 3 <= t < 2 * duration / 3 else base


SHAPES = {"steady": steady, "ramp": ramp, "spike": spike}


def users_at(shape: str, t: float, duration: float, peak: int) -> int | None:
    """Users at time t, or None once the run is over."""
    return None if t >= duration else SHAPES[shape](t, duration, peak)
