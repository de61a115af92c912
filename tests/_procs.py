"""Process bookkeeping for the lifecycle tests.

A process that has exited but whose parent has not reaped it yet is a zombie: it uses no
resources and runs no code, but ``psutil`` still sees its pid.  Orphans are reparented to
PID 1, and in some containers PID 1 never reaps, so such zombies stay forever.  Every check
here therefore counts a zombie as gone.
"""

from __future__ import annotations

import time

import psutil


def is_live(proc: psutil.Process) -> bool:
    """True while ``proc`` exists and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def live(procs) -> list[psutil.Process]:
    return [p for p in procs if is_live(p)]


def live_descendants(pid: int) -> list[psutil.Process]:
    try:
        return live(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def describe(procs) -> list[tuple[int, list[str]]]:
    out = []
    for p in procs:
        try:
            out.append((p.pid, p.cmdline()))
        except psutil.Error:
            out.append((p.pid, ["<gone>"]))
    return out


def survivors(procs, timeout: float, period: float = 0.1) -> list[tuple[int, list[str]]]:
    """Wait up to ``timeout`` for ``procs`` to end; kill and describe the ones that did not.

    Killing them keeps one failing test from leaking processes into the rest of the run.
    """
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while live(procs) and time.monotonic() < deadline:
        psutil.wait_procs(live(procs), timeout=period)  # reaps our own children as they exit
    left = live(procs)
    described = describe(left)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    return described
