"""Where a remote session's start stands, and how to say it (pure).

On a real cluster a session can take minutes to start: it is queued for resources (PENDING),
placed on an agent (SCHEDULED), its container prepared (PREPARING) and its image pulled
(PULLING) before it runs.  The bridge creates it with ``enqueueOnly`` and follows its status
(docs/PROTOCOL.md#sessions); the first cell shows one line, updated in place, and
``%remote info`` says the same.  Nothing is executed before the session is RUNNING.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = "RUNNING"
# A session in one of these never runs: the start failed.
ENDED = frozenset({"ERROR", "CANCELLED", "TERMINATING", "TERMINATED"})
# Before the create call answered (a server that holds the call until the session runs).
REQUESTED = "REQUESTED"


@dataclass(frozen=True)
class StartupStatus:
    """The session's status as last seen, with the server's words for it (``statusInfo``)."""

    status: str
    info: str = ""
    started_at: float = 0.0  # time.monotonic() when the bridge asked for the session

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def failed(self) -> bool:
        return self.status in ENDED


def status_of(answer: dict) -> StartupStatus | None:
    """``GET /session/{id}`` (or the create answer) → the status, or None when it has none
    (older servers: their create call answers once the session runs)."""
    status = answer.get("status")
    if not isinstance(status, str) or not status:
        return None
    info = answer.get("statusInfo", answer.get("status_info"))
    info = info.strip() if isinstance(info, str) else ""
    if info.lower() in ("none", "null"):  # a manager's str(None) right after the create
        info = ""
    return StartupStatus(status.upper(), info)


def describe(name: str, image: str, status: StartupStatus, now: float) -> str:
    """The progress line: ``remote session rk-1 (python): PULLING: pulling image python: 40% — 12 s``."""
    elapsed = max(0.0, now - status.started_at)
    what = status.status if status.status != REQUESTED else "requested"
    detail = f": {status.info}" if status.info else ""
    return f"remote session {name} ({image}): {what}{detail} — {elapsed:.0f} s"


def poll_interval(elapsed: float) -> float:
    """How long to wait before asking for the status again: soon at first, then every 2 s."""
    if elapsed < 2.0:
        return 0.25
    if elapsed < 10.0:
        return 0.5
    return 2.0
