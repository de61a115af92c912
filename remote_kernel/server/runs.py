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

_RUN_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

TRUNCATION_NOTICE = (
    "\n[remote-kernel] output truncated: about {dropped} of this run's output was dropped here "
    "(the client fell more than {limit} behind); the output before and after this notice is "
    "kept.\n"
)
TAIL_SHARE = 4  # while output is dropped, the newest 1/TAIL_SHARE of the buffer is kept


def amount(size: int) -> str:
    """``size`` bytes for people: never "0 MiB" for a small buffer."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def new_run_id() -> str:
    return uuid.uuid4().hex


def valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID_RE.fullmatch(run_id))


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
        # Bounded memory: unacknowledged output beyond the head room is not kept, except the
        # newest (the tail), which follows a notice of what was dropped once the client catches
        # up or the run reaches a result of its own (input, a batch step, the end).
        self._tail_budget = max_buffer // TAIL_SHARE
        self._truncated = False
        self._tail: deque[Record] = deque()
        self._tail_bytes = 0
        self._dropped = 0
        self._changed = asyncio.Event()
        # the engine has replied to the run's request: its last output and its end follow at once
        self.ending = False

    # -- producer side -----------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self._base + len(self._records)

    @property
    def acked(self) -> int:
        """The cursor the client acknowledged: records before it were delivered and dropped."""
        return self._base

    @property
    def finished(self) -> bool:
        return self.state == RUN_FINISHED

    def add(self, records: list[Record]) -> None:
        for record in records:
            size = record_size(record)
            if not self._truncated:
                room = self._max_buffer - self._tail_budget - self._bytes
                if size <= room:
                    self._append(record, size)
                    continue
                # the head is full: what fits of this chunk ends it, the rest goes to the tail
                self._truncated = True
                if record[0] in STREAMS and isinstance(record[1], str) and room > 0:
                    self._append([record[0], record[1][:room]], room)
                    record, size = [record[0], record[1][room:]], size - room
            self._keep_tail(record, size)
        self._changed.set()

    def _keep_tail(self, record: Record, size: int) -> None:
        """Keep ``record`` among the newest output; drop (and count) the oldest beyond the budget."""
        budget = self._tail_budget
        if size > budget:
            if record[0] not in STREAMS or not isinstance(record[1], str):
                self._dropped += size  # one output larger than the whole tail
                return
            self._dropped += size - budget + self._tail_bytes  # it alone fills the tail
            self._tail.clear()
            record, size, self._tail_bytes = [record[0], record[1][size - budget:]], budget, 0
        self._tail.append(list(record))
        self._tail_bytes += size
        while self._tail_bytes > budget:
            oldest = self._tail[0]
            excess = self._tail_bytes - budget
            old_size = record_size(oldest)
            # cut a long stream chunk by at least an eighth of the budget, so that a run of
            # small records after it does not copy it each time
            cut = max(excess, budget // 8)
            if oldest[0] in STREAMS and isinstance(oldest[1], str) and old_size > cut:
                oldest[1] = oldest[1][cut:]
                self._tail_bytes -= cut
                self._dropped += cut
            else:
                self._tail.popleft()
                self._tail_bytes -= old_size
                self._dropped += old_size

    def _end_truncation(self) -> None:
        """Output flows again: the notice of what was dropped, then the tail kept meanwhile
        (still within the buffer's bound when the client has not caught up)."""
        if not self._truncated:
            return
        self._truncated = False
        # (the newest record stays whatever the bound: an input prompt must reach the client)
        while len(self._tail) > 1 and self._bytes + self._tail_bytes > self._max_buffer:
            size = record_size(self._tail.popleft())
            self._tail_bytes -= size
            self._dropped += size
        notice = ["stderr", TRUNCATION_NOTICE.format(dropped=amount(self._dropped),
                                                     limit=amount(self._max_buffer))]
        self._barrier = self.end  # the notice is a record of its own: nothing merges into it
        self._append(notice, record_size(notice))
        self._barrier = self.end
        for record in self._tail:
            self._append(record, record_size(record))
        self._tail.clear()
        self._tail_bytes = 0
        self._dropped = 0

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
        self._end_truncation()
        self._markers.append((self.end, status, exit_code))
        self._barrier = self.end  # output of the next step is never merged into this one's
        self._changed.set()

    def start(self) -> None:
        if self.state == RUN_QUEUED:
            self.state = RUN_RUNNING
            self._changed.set()

    def wait_input(self, options: dict) -> None:
        self._end_truncation()  # the prompt must reach the client
        self.state = RUN_WAITING_INPUT
        self.input_options = options
        self._changed.set()

    def replied(self) -> None:
        """The engine replied; the run finishes as soon as the rest of its output is in."""
        self.ending = True

    def resume(self) -> None:
        if self.state == RUN_WAITING_INPUT:
            self.state = RUN_RUNNING
            self.input_options = None

    def finish(self, exit_code: int, options: dict | None = None) -> None:
        """The run is over; ``options`` go with its last result."""
        if self.state == RUN_FINISHED:
            return
        self._end_truncation()
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

    async def wait(self, hold: float, coalesce: float, text_coalesce: float | None = None) -> None:
        """Return at once when finished or waiting for input; once new output is there, after
        ``coalesce`` seconds more, or ``text_coalesce`` (default: ``coalesce``) when it holds
        stdout/stderr text; without output, after ``hold`` seconds.  Output that comes after
        the engine's reply (``ending``) is the last of the run: its answer waits for the end.
        Output that arrived together (read before this poll ran again) goes in one answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold
        window_end = None
        while not self._ready():
            now = loop.time()
            limit = deadline
            if self.end > self._sent and not self.ending:
                if window_end is None:
                    window_end = now + coalesce
                if text_coalesce is not None and window_end > now + text_coalesce and self._new_text():
                    window_end = now + text_coalesce
                limit = min(window_end, deadline)
            if limit <= now:
                return
            await self._wait_changed(limit - now)

    def _new_text(self) -> bool:
        """Whether stdout/stderr text is among the records not delivered yet."""
        for index in range(len(self._records) - 1, self._sent - self._base - 1, -1):
            if self._records[index][0] in STREAMS:
                return True
        return False

    def acknowledge(self, cursor: int | None) -> None:
        """What a request says its client holds (None: everything delivered before), before it
        waits: a client catching up gets the kept tail of dropped output at once."""
        self.ack(self._sent if cursor is None else cursor)

    def ack(self, cursor: int) -> None:
        cursor = max(self._base, min(cursor, self.end))
        drop = cursor - self._base
        if drop:
            for record in self._records[:drop]:
                self._bytes -= record_size(record)
            del self._records[:drop]
            self._base = cursor
            self._sent = max(self._sent, cursor)
        if self._truncated and self._bytes < (self._max_buffer - self._tail_budget) // 2:
            self._end_truncation()  # the client caught up

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
