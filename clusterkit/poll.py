"""The one way the project waits for something: poll a check until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable


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
