"""The one way the project waits for something (poll a check until it holds) or watches it
change (sample it on a thread while something else happens)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def wait_for(
    what: str | Callable[[], str],
    check: Callable[[], object],
    timeout: float,
    interval: float = 1,
    abort: Callable[[], None] | None = None,
) -> float:
    """Poll `check` until it returns something true; the seconds it took.

    Raises TimeoutError after `timeout` seconds, naming `what` (a function when the state at that
    moment says more). `abort` runs before each check and raises to give up at once, when what
    should make the check true has died.
    """
    started = time.monotonic()
    while True:
        if abort:
            abort()
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}"
            )
        time.sleep(interval)


class Sampler(Generic[T]):
    """`sample()` every `interval` seconds on a thread while open, each value kept with its
    time.monotonic(): what a test looks back on after an event (pods, endpoints, a health)."""

    def __init__(self, sample: Callable[[], T], interval: float = 1):
        self.sample, self.interval = sample, interval
        self.samples: list[tuple[float, T]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # One last sample once closed: the samples cover the whole time it was open.
        while True:
            self.samples.append((time.monotonic(), self.sample()))
            if self._stop.is_set():
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
