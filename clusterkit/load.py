"""Steady background traffic of real MNIST digits, every answer checked against the truth.

For the contract scenarios: keep clients busy while a node dies or a config rolls out, then
count what failed and when. (`loadtest/` drives Locust at a real cluster; this is the
in-process equivalent a test can start and stop around an event.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import requests

from clusterkit.poll import wait_for


@dataclass(frozen=True)
class Outcome:
    start: float  # time.monotonic() when the request was sent
    latency_s: float
    status: int  # 0: no HTTP answer (connection refused or reset, timeout)
    correct: int  # images whose label matched the truth
    images: int
    model_version: str | None
    batch_size: int | None
    error: str = ""  # what a failed request got back, for the report


class Load:
    """`clients` threads, each posting `batch` raw images at a time to /predict until stopped.
    Several URLs stand for a Service's endpoints: client i keeps to url i mod n (one connection)."""

    def __init__(
        self, url: str | list[str], images: np.ndarray, labels: np.ndarray, clients: int = 8, batch: int = 1
    ):
        self.urls = [f"{u}/predict" for u in ([url] if isinstance(url, str) else url)]
        self.images, self.labels = images, labels
        self.clients, self.batch = clients, batch
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        session = requests.Session()
        while not self._stop.is_set():
            pick = rng.integers(0, len(self.labels), self.batch)
            started = time.monotonic()
            try:
                response = session.post(
                    self.urls[seed % len(self.urls)],
                    data=self.images[pick].tobytes(),
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=30,
                )
                status = response.status_code
                correct = (
                    int(np.sum(np.array(response.json()["labels"]) == self.labels[pick]))
                    if response.ok
                    else 0
                )
                version = response.headers.get("x-model-version")
                batch_size = int(response.headers["x-batch-size"]) if response.ok else None
                error = "" if response.ok else response.text[:200]
            except requests.RequestException as exc:
                status, correct, version, batch_size, error = 0, 0, None, None, root_cause(exc)
            outcome = Outcome(
                started, time.monotonic() - started, status, correct, self.batch, version, batch_size, error
            )
            with self._lock:
                self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def between(self, start: float = 0.0, end: float = float("inf")) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if start <= o.start < end]

    def wait_for(self, requests_count: int, timeout_s: float = 60, since: float | None = None) -> None:
        """Block until this many more requests have been served (200): the load is really flowing.
        A refused connection or an error is not an answer. With `since` (a time.monotonic()),
        count only requests sent from then on, which may be in the future."""
        served = lambda: sum(o.status == 200 for o in self.between(since or 0.0))  # noqa: E731
        target = requests_count if since is not None else served() + requests_count
        wait_for(
            lambda: f"{target} requests served (now {served()})", lambda: served() >= target, timeout_s, 0.1
        )


def root_cause(exc: BaseException) -> str:
    """What really failed under requests' wrapping: 'ConnectionRefusedError: [Errno 111] ...'."""
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}"


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    """Requests that got no successful HTTP answer."""
    return [o for o in outcomes if o.status != 200]


def accuracy(outcomes: list[Outcome]) -> float:
    answered = [o for o in outcomes if o.status == 200]
    return sum(o.correct for o in answered) / max(1, sum(o.images for o in answered))


def summary(outcomes: list[Outcome]) -> str:
    """A line for the report: requests, failures by status (with the first answer of each, so a
    failed run says what it got back), accuracy."""
    bad = failed(outcomes)
    first = {o.status: o.error for o in reversed(bad)}
    by_status = ", ".join(f"{s}: {sum(o.status == s for o in bad)} {first[s][:80]!r}" for s in sorted(first))
    by_status = f" {{{by_status}}}" if bad else ""
    return f"{len(outcomes)} requests, {len(bad)} failed{by_status}, accuracy {accuracy(outcomes):.3f}"
