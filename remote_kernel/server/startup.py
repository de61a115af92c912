"""A session's way to RUNNING, and what a call on it says before then.

A real manager's session takes time to start: it waits for resources (``PENDING``), is placed
on an agent (``SCHEDULED``), gets its container prepared (``PREPARING``) and its image pulled
(``PULLING``), and only then runs.  ``remote-kernel serve --slow-start SECONDS`` imitates that
(docs/PROTOCOL.md#what-the-embedded-server-also-accepts): ``walk`` takes a new session through
those statuses over SECONDS, with a ``statusInfo`` phrase for each (a percentage that grows
while ``PULLING``); the session's kernel starts after the walk, and the session is ``RUNNING``
(usable) only once it has.

Whatever the switch, a session not running yet answers ``GET`` and ``DELETE`` (and its logs);
any other call on it is ``not_running`` (500 ``kernel-execution-failed``, as a real manager
answers an execute on a session without an agent yet).
"""

from __future__ import annotations

import asyncio

from remote_kernel import protocol
from remote_kernel.server.errors import APIProblem

PENDING = protocol.SESSION_PENDING
SCHEDULED = "SCHEDULED"
PREPARING = "PREPARING"
PULLING = "PULLING"
ERROR = "ERROR"  # the start failed; kept for a while so that a client polling it learns why
STARTING = frozenset({PENDING, SCHEDULED, PREPARING, PULLING})
# what a real manager refuses to destroy unless forced (--slow-start imitates it)
UNDESTROYABLE = frozenset({SCHEDULED, PREPARING})

# (status, share of the SECONDS, statusInfo); PULLING's statusInfo is the pull's progress
PHASES = (
    (PENDING, 0.25, "waiting for resources"),
    (SCHEDULED, 0.15, "scheduled on agent local"),
    (PREPARING, 0.20, "preparing the container"),
    (PULLING, 0.40, None),
)
PULL_STEPS = 10  # PULLING's statusInfo goes 0%, 10%, ... 90%, then 100% until the kernel runs


def pulling_info(image: str, percent: int) -> str:
    return f"pulling image {image}: {percent}%"


async def walk(session, seconds: float) -> None:
    """Set ``session.status`` and ``session.status_info`` through ``PHASES`` over ``seconds``
    (the caller starts the kernel afterwards, which makes the session RUNNING)."""
    for status, share, info in PHASES:
        session.status = status
        duration = seconds * share
        if info is not None:
            session.status_info = info
            await asyncio.sleep(duration)
            continue
        for step in range(PULL_STEPS):
            session.status_info = pulling_info(session.image, step * 100 // PULL_STEPS)
            await asyncio.sleep(duration / PULL_STEPS)
        session.status_info = pulling_info(session.image, 100)


class NotRunning(APIProblem):
    """A call that needs the session's kernel, on a session that is not RUNNING (yet)."""


def not_running(session) -> NotRunning:
    status = session.status + (f" ({session.status_info})" if session.status_info else "")
    yet = " yet" if session.status in STARTING else ""
    return NotRunning(500, "kernel-execution-failed", f"The session is not running{yet}.",
                      f"session {session.name!r} is not running{yet}: its status is {status}")
