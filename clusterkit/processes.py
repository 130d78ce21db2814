"""Ending everything a run started, found by a tag in its environment.

Ray runs each worker in a session of its own and starts HAProxy as a child of its proxy actor
(ray/serve/_private/haproxy.py, `_start_and_wait_for_haproxy`). When a node dies hard, or
`ray start` gives up half-way, such processes outlive their parents, are reparented to PID 1
and keep their ports; a snapshot of the process tree misses them, and misses anything forked
just after it. Every process inherits its parent's environment, Ray's workers and HAProxy
included, so what we start carries `MNIST_SERVE_TAG=<value unique to the run>`: everything
below it is found by that value, orphaned or not, and a stranger never is.

Ray's Python processes (workers, agents) name themselves with setproctitle, which overwrites the
memory /proc/PID/environ reads: theirs reads empty. They are found instead as descendants of the
tagged processes that started them (the raylet), collected before anything is signalled.
"""

from __future__ import annotations

import os
import signal

import psutil

TAG = "MNIST_SERVE_TAG"
# Killing a parent stops it forking; a child forked during one round is caught by the next.
ROUNDS = 5


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline()) or proc.name()})"
    except psutil.Error:
        return f"pid {proc.pid}"


def tagged(prefix: str) -> list[psutil.Process]:
    """The live processes whose tag starts with `prefix`, and all their descendants."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TAG, "").startswith(prefix):
                for each in (proc, *proc.children(recursive=True)):
                    if each.status() != psutil.STATUS_ZOMBIE:
                        found[each.pid] = each
        except psutil.Error:  # gone, a zombie, or not ours to read
            pass
    return list(found.values())


def end_tagged(prefix: str, graceful: bool = True) -> list[str]:
    """End every process tagged `prefix…` (SIGTERM, or SIGKILL when not `graceful`), until
    none is left; describe what was ended."""
    assert prefix, "an empty prefix would match every tagged process"
    ended: list[str] = []
    for _ in range(ROUNDS):
        procs = tagged(prefix)
        if not procs:
            return ended
        ended += [describe(proc) for proc in procs]
        end_processes(procs, graceful)
    left = tagged(prefix)
    if left:
        raise RuntimeError(f"still alive after {ROUNDS} rounds: {', '.join(map(describe, left))}")
    return ended


def end_processes(procs: list[psutil.Process], graceful: bool = True) -> None:
    """SIGTERM (or SIGKILL) each of `procs`; SIGKILL what is still alive 10 s later."""
    for proc in procs:
        try:
            proc.terminate() if graceful else proc.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)


def end_group(pid: int, grace: float = 20) -> None:
    """SIGTERM the process group `pid` leads (a process started with start_new_session); SIGKILL
    the group if its leader is still alive `grace` seconds later."""
    try:
        leader = psutil.Process(pid)
        os.killpg(pid, signal.SIGTERM)
        leader.wait(grace)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
    except psutil.TimeoutExpired:
        os.killpg(pid, signal.SIGKILL)
