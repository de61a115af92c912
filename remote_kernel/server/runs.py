"""``Run``: one query or batch run of a session — its record buffer, the resumable-runs cursor,
long-poll wake-ups and input state.  No I/O: the session feeds it, handlers read it.

Cursor semantics (docs/PROTOCOL.md#our-extensions-resumable-runs): records are numbered from 0
within a run; a result holding records ``[a, b)`` carries ``"cursor": b``.  A request carrying
``cursor: n`` acknowledges (drops) records below ``n`` and gets the ones from ``n`` on.  A
request without a cursor (official clients) acknowledges everything delivered before.  Records
delivered once are frozen, so stream merging never alters what a client may already hold.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque

from remote_kernel import protocol
from remote_kernel.server.records import STREAMS, Record, mergeable, record_size

# the states of a run (``Run.state``)
RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_WAITING_INPUT = "waiting-input"
RUN_FINISHED = "finished"

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

TRUNCATION_NOTICE = (
    "\n[remote-kernel] output truncated: more than {mib} MiB of this run's output was not yet "
    "fetched by the client; further output is dropped until it catches up.\n"
)


def new_run_id() -> str:
    return uuid.uuid4().hex


def valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID_RE.match(run_id))


class Run:
    def __init__(self, run_id: str, mode: str, code: str = "", options: dict | None = None,
                 jupyter: bool = False, allow_stdin: bool = True, max_buffer: int = 32 * 1024 * 1024):
        self.run_id = run_id
        self.mode = mode
        self.code = code
        self.options = options or {}
        self.jupyter = jupyter
        self.allow_stdin = allow_stdin
        self.state = RUN_QUEUED
        self.exit_code: int | None = None
        self.input_options: dict | None = None
        self.final_options: dict | None = None
        self.finished_at: float | None = None
        self.finished_event = asyncio.Event()
        self._records: list[Record] = []
        self._base = 0  # absolute index of self._records[0]
        self._sent = 0  # absolute: records below were delivered at least once (frozen)
        self._barrier = 0  # absolute: no merging into records below (a batch step ended there)
        self._markers: deque[tuple[int, str, int]] = deque()  # (position, status, exitCode)
        self._bytes = 0
        self._max_buffer = max_buffer
        self._truncated = False
        self._changed = asyncio.Event()

    # -- producer side -----------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self._base + len(self._records)

    @property
    def finished(self) -> bool:
        return self.state == RUN_FINISHED

    def add(self, records: list[Record]) -> None:
        for record in records:
            size = record_size(record)
            if self._bytes + size > self._max_buffer:
                # Bounded memory: a cell printing forever must not exhaust the server.
                if not self._truncated:
                    self._truncated = True
                    notice = ["stderr", TRUNCATION_NOTICE.format(mib=self._max_buffer // (1024 * 1024))]
                    self._append(notice, record_size(notice))
                continue
            self._append(record, size)
        self._changed.set()

    def _append(self, record: Record, size: int) -> None:
        if self._records and self.end - 1 >= max(self._sent, self._barrier) and mergeable(self._records[-1], record):
            last = self._records[-1]
            # pending stream text is kept as a list of chunks and joined once, on delivery
            if isinstance(last[1], list):
                last[1].append(record[1])
            else:
                last[1] = [last[1], record[1]]
        else:
            self._records.append(list(record))
        self._bytes += size

    def phase(self, status: str, exit_code: int) -> None:
        """A batch step ended (``clean-finished``/``build-finished``): one result reports it."""
        self._markers.append((self.end, status, exit_code))
        self._barrier = self.end  # output of the next step is never merged into this one's
        self._changed.set()

    def start(self) -> None:
        if self.state == RUN_QUEUED:
            self.state = RUN_RUNNING
            self._changed.set()

    def wait_input(self, options: dict) -> None:
        self.state = RUN_WAITING_INPUT
        self.input_options = options
        self._changed.set()

    def resume(self) -> None:
        if self.state == RUN_WAITING_INPUT:
            self.state = RUN_RUNNING
            self.input_options = None

    def finish(self, exit_code: int, options: dict | None = None) -> None:
        """The run is over; ``options`` go with its last result."""
        if self.state == RUN_FINISHED:
            return
        self.state = RUN_FINISHED
        self.exit_code = exit_code
        self.final_options = options
        self.finished_at = time.monotonic()
        self.input_options = None
        self.finished_event.set()
        self._changed.set()

    # -- consumer side -----------------------------------------------------------------------

    def _ready(self) -> bool:
        return self.state in (RUN_FINISHED, RUN_WAITING_INPUT) or bool(self._markers)

    async def _wait_changed(self, timeout: float) -> None:
        self._changed.clear()
        try:
            if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per wait
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            else:  # pragma: no cover - Python 3.10
                await asyncio.wait_for(self._changed.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            pass

    async def wait(self, hold: float, coalesce: float) -> None:
        """Return at once when finished/waiting for input, shortly after output appears
        (coalescing window), else after ``hold`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold
        while not self._ready():
            if self.end > self._sent:
                window_end = min(loop.time() + coalesce, deadline)
                while not self._ready():
                    remaining = window_end - loop.time()
                    if remaining <= 0:
                        break
                    await self._wait_changed(remaining)
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await self._wait_changed(remaining)

    def ack(self, cursor: int) -> None:
        cursor = max(self._base, min(cursor, self.end))
        drop = cursor - self._base
        if drop:
            for record in self._records[:drop]:
                self._bytes -= record_size(record)
            del self._records[:drop]
            self._base = cursor
            self._sent = max(self._sent, cursor)
        if self._truncated and self._bytes < self._max_buffer // 2:
            self._truncated = False

    def result(self, cursor: int | None) -> dict:
        """The next result: records from ``cursor`` (None: everything not yet delivered)."""
        self.ack(self._sent if cursor is None else cursor)
        start = self._base
        end = self.end
        options = None
        if self._markers:
            position, status, exit_code = self._markers.popleft()
            end = max(start, min(position, end))
        elif self.state == RUN_FINISHED:
            status, exit_code, options = protocol.STATUS_FINISHED, self.exit_code, self.final_options
        elif self.state == RUN_WAITING_INPUT:
            status, exit_code, options = protocol.STATUS_WAITING_INPUT, None, dict(self.input_options or {})
        else:
            status, exit_code = protocol.STATUS_CONTINUED, None
        console = []
        for record in self._records[start - self._base:end - self._base]:
            if isinstance(record[1], list) and record[0] in STREAMS:
                record[1] = "".join(record[1])  # frozen from now on
            console.append(list(record))
        self._sent = max(self._sent, end)
        return {"runId": self.run_id, "status": status, "exitCode": exit_code, "options": options,
                "files": [], "console": console, "cursor": end}
