"""The execute loop (docs/PROTOCOL.md#the-execute-loop) as transport-free logic.

:class:`RunState` says which body to POST next and turns each ``result`` into events; whoever
owns the HTTP connection (``Client.run``, the kernel) just shuttles between the two.  With the
``resumable-runs`` extension (docs/PROTOCOL.md#our-extensions-resumable-runs) the client picks the runId and tracks the server's
record ``cursor``, so re-sending a request whose answer was lost neither loses nor duplicates
output.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Union

from remote_kernel import protocol
from remote_kernel.client import errors


@dataclass(frozen=True)
class Record:
    """One console record: ``kind`` is ``stdout``, ``stderr``, ``media``, ``html``, ``display``..."""

    kind: str
    data: Any


@dataclass(frozen=True)
class InputWanted:
    """The run waits for a line of input; answer with :meth:`RunState.reply`."""

    prompt: str = ""
    password: bool = False
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    """The run is over: ``status`` is ``finished`` or ``exec-timeout``; ``options`` are the last
    result's (with our extensions, ``reply`` is the inner kernel's execute_reply)."""

    status: str
    exit_code: int | None = None
    options: dict = field(default_factory=dict)


Event = Union[Record, InputWanted, Done]

# API v1 results carried these fields instead of an ordered ``console`` list.
_V1_FIELDS = ("stdout", "stderr", "media", "html")


def new_run_id() -> str:
    return uuid.uuid4().hex


def console_of(result: dict) -> list[Record]:
    """The records of one result, from ``console`` or from the API-v1 separate fields."""
    console = result.get("console")
    records: list[Record] = []
    if isinstance(console, list):
        for item in console:
            # Malformed entries are skipped like unknown kinds: output must keep flowing.
            if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
                records.append(Record(item[0], item[1]))
        return records
    for name in _V1_FIELDS:
        value = result.get(name)
        if not value:
            continue
        if name in ("stdout", "stderr"):
            records.append(Record(name, value))
        elif isinstance(value, list):
            records.extend(Record(name, item) for item in value)
        else:
            records.append(Record(name, value))
    return records


class RunState:
    """One run of the execute loop.

    ``request()`` → the next JSON body; ``handle(result)`` → events; ``reply(text)`` after an
    :class:`InputWanted`.  ``finished`` turns true with the :class:`Done` event.
    """

    def __init__(
        self,
        mode: str = protocol.MODE_QUERY,
        code: str = "",
        options: dict | None = None,
        resumable: bool = False,
        run_id: str | None = None,
    ):
        if mode not in (protocol.MODE_QUERY, protocol.MODE_BATCH):
            raise ValueError(f"a run starts with mode 'query' or 'batch', not {mode!r}")
        self.mode = mode
        self.resumable = resumable
        self.run_id = run_id or (new_run_id() if resumable else None)
        self.cursor = 0  # records of this run received so far (resumable servers count them)
        self.status: str | None = None
        self.exit_code: int | None = None
        self.finished = False
        self.waiting_input = False
        self._next: dict | None = {
            "mode": mode,
            "code": code or "",
            "runId": self.run_id,
            "options": dict(options or {}),
        }

    @classmethod
    def resume(cls, run_id: str, cursor: int) -> "RunState":
        """A run another client started (a bridge that went away), fetched on from ``cursor``,
        the last record that client acknowledged (our resumable-runs extension)."""
        state = cls(mode=protocol.MODE_QUERY, resumable=True, run_id=run_id)
        state.cursor = max(0, int(cursor))
        state._next = state._follow_up(protocol.MODE_CONTINUE, "")
        return state

    @property
    def idempotent(self) -> bool:
        """Whether re-sending ``request()`` is safe (server-side dedup by runId and cursor)."""
        return self.resumable

    def request(self) -> dict:
        if self.finished:
            raise RuntimeError("the run is over; there is nothing more to request")
        if self._next is None:
            raise RuntimeError("the run waits for input; call reply() first")
        return dict(self._next)

    def reply(self, text: str) -> None:
        if not self.waiting_input:
            raise RuntimeError("the run is not waiting for input")
        if text.endswith("\n"):
            text = text[:-1]
        self.waiting_input = False
        self._next = self._follow_up(protocol.MODE_INPUT, text)

    def stop_waiting_for_input(self) -> None:
        """No answer will come (the run was asked to stop): fetch the run's end with ``continue``."""
        if self.finished:
            raise RuntimeError("the run is over; there is nothing more to request")
        self.waiting_input = False
        self._next = self._follow_up(protocol.MODE_CONTINUE, "")

    def _follow_up(self, mode: str, code: str) -> dict:
        options = {"cursor": self.cursor} if self.resumable else {}
        return {"mode": mode, "code": code, "runId": self.run_id, "options": options}

    def handle(self, result: Any) -> list[Event]:
        if self.finished:
            raise RuntimeError("the run is over; no more results expected")
        if not isinstance(result, dict):
            raise errors.BadResponse(msg=f"execute result is not an object: {type(result).__name__}")
        status = result.get("status")
        if status not in protocol.POLL_AGAIN_STATUSES | protocol.TERMINAL_STATUSES | {protocol.STATUS_WAITING_INPUT}:
            raise errors.BadResponse(msg=f"unknown execute status {status!r}")
        if self.run_id is None and isinstance(result.get("runId"), str):
            self.run_id = result["runId"]

        events: list[Event] = list(self._new_records(result))
        self.status = status
        exit_code = result.get("exitCode")
        self.exit_code = exit_code if isinstance(exit_code, int) else None

        if status in protocol.TERMINAL_STATUSES:
            self.finished = True
            self._next = None
            options = result.get("options") if isinstance(result.get("options"), dict) else {}
            events.append(Done(status, self.exit_code, options))
        elif status == protocol.STATUS_WAITING_INPUT:
            options = result.get("options") if isinstance(result.get("options"), dict) else {}
            self.waiting_input = True
            self._next = None
            events.append(InputWanted(
                prompt=str(options.get("prompt") or ""),
                password=bool(options.get("is_password", False)),
                options=options,
            ))
        else:
            self._next = self._follow_up(protocol.MODE_CONTINUE, "")
        return events

    def _new_records(self, result: dict) -> list[Record]:
        records = console_of(result)
        cursor = result.get("cursor")
        if not self.resumable or not isinstance(cursor, int) or isinstance(cursor, bool):
            return records
        # This result holds records [cursor - len, cursor); we already have [0, self.cursor).
        first = cursor - len(records)
        skip = max(0, self.cursor - first)
        self.cursor = max(self.cursor, cursor)
        return records[skip:]
