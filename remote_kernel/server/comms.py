"""Our ``jupyter-comms`` extension, server side (docs/PROTOCOL.md#our-extensions-jupyter-comms):
the request ids a query may choose, comm messages as console records of a run, and the
session's ``EventLog`` of what the inner kernel says between cells.  No I/O: the inner kernel's
reader feeds the log, the handlers (handlers/comms.py) read it.

Event-log cursor semantics: events are numbered from 0 for the session's life (``seq``).  A poll
with ``cursor: n`` acknowledges (frees) the events below ``n`` and answers those from ``n`` on;
nothing it answers is freed until a later poll carries a cursor beyond it, so the same poll sent
again answers the same events.  The log is bounded; when full, the oldest events go and are
counted (``dropped`` in the answer of the poll whose cursor they fall after).
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections import deque

from remote_kernel import jsonio
from remote_kernel.server.errors import bad_params
from remote_kernel.server.records import Record

COMM_MSG_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
# the inner iopub messages the event log keeps (status, execute_input, input_request: never)
LOGGED_MSG_TYPES = COMM_MSG_TYPES | {"stream", "display_data", "update_display_data", "execute_result", "error",
                                     "clear_output"}

MAX_EVENTS = 5000
MAX_EVENT_BYTES = 16 * 1024 * 1024
MAX_ANSWER_EVENTS = 1000  # one poll's answer; the rest comes with the next cursor
MAX_ANSWER_BYTES = 4 * 1024 * 1024
DEFAULT_WAIT = 20.0
MAX_WAIT = 30.0

_MSG_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def valid_msg_id(value: object) -> bool:
    return isinstance(value, str) and bool(_MSG_ID_RE.match(value))


def new_msg_id() -> str:
    return uuid.uuid4().hex


def check_query_options(options: dict) -> None:
    """``msgId`` and ``comms`` of a query's options; 400 when malformed."""
    if "msgId" in options and not valid_msg_id(options["msgId"]):
        raise bad_params("'options.msgId' must be 1 to 128 characters of letters, digits, '_', '.', ':' and '-'")
    if not isinstance(options.get("comms", False), bool):
        raise bad_params("'options.comms' must be a boolean")


def wants_comms(run) -> bool:
    """The run records its comm messages (``comms: true`` with ``outputs: "jupyter"``)."""
    return run.jupyter and run.options.get("comms") is True


def _b64(buffers) -> list[str]:
    return [base64.b64encode(bytes(buffer)).decode("ascii") for buffer in buffers or ()]


def comm_record(msg: dict) -> Record:
    """An inner iopub comm message → its console record."""
    return ["comm", {"msg_type": msg.get("msg_type"), "content": msg.get("content") or {},
                     "metadata": msg.get("metadata") or {}, "buffers": _b64(msg.get("buffers"))}]


def parent_of(msg: dict) -> str | None:
    parent = (msg.get("parent_header") or {}).get("msg_id")
    return parent if isinstance(parent, str) and parent else None


def decode_buffers(value: object) -> list[bytes]:
    """A frontend message's ``buffers`` (base64 strings) → bytes; 400 when malformed."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_params("'buffers' must be a list of base64 strings")
    try:
        return [base64.b64decode(item, validate=True) for item in value]
    except ValueError:
        raise bad_params("'buffers' must be a list of base64 strings") from None


# how long ``POST .../comm`` with "wait" waits for the handler (a cell running holds it back)
COMM_IDLE_TIMEOUT = 10.0


def frontend_message(body: dict) -> tuple[str, str, dict, dict, list[bytes]]:
    """``POST .../comm``: (msg_type, msg_id, content, metadata, buffers); 400 when malformed."""
    msg_type = body.get("msg_type")
    if msg_type not in COMM_MSG_TYPES:
        raise bad_params("'msg_type' must be one of comm_open, comm_msg, comm_close")
    msg_id = body.get("msgId")
    if msg_id is None:
        msg_id = new_msg_id()
    elif not valid_msg_id(msg_id):
        raise bad_params("'msgId' must be 1 to 128 characters of letters, digits, '_', '.', ':' and '-'")
    content = body.get("content")
    if not isinstance(content, dict):
        raise bad_params("'content' must be an object")
    if not isinstance(content.get("comm_id"), str) or not content["comm_id"]:
        raise bad_params("'content.comm_id' must be a non-empty string")
    if msg_type == "comm_open" and not isinstance(content.get("target_name"), str):
        raise bad_params("'content.target_name' of a comm_open must be a string")
    if not isinstance(content.get("data", {}), dict):
        raise bad_params("'content.data' must be an object")
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise bad_params("'metadata' must be an object")
    return msg_type, msg_id, content, metadata, decode_buffers(body.get("buffers"))


class EventLog:
    """What the inner kernel says outside the runs that record it, numbered, bounded and
    fetched by long polls.  Collects nothing until ``enable`` (a client polled, or ran a query
    with comms): a session nobody polls keeps no events."""

    def __init__(self, max_events: int = MAX_EVENTS, max_bytes: int = MAX_EVENT_BYTES):
        self.enabled = False
        self.closed = False
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._events: deque[tuple[int, bytes]] = deque()  # (seq, the event as JSON)
        self._bytes = 0
        self._next = 0  # the seq of the next event
        self._changed = asyncio.Event()

    @property
    def next_seq(self) -> int:
        return self._next

    def enable(self) -> None:
        self.enabled = True

    def close(self) -> None:
        """The session is gone: waiting polls return at once."""
        self.closed = True
        self._events.clear()
        self._bytes = 0
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def add(self, msg: dict) -> None:
        """An inner iopub message no run took as a record."""
        msg_type = msg.get("msg_type")
        if not self.enabled or self.closed or msg_type not in LOGGED_MSG_TYPES:
            return
        seq = self._next
        self._next += 1
        event = {"seq": seq, "msg_type": msg_type, "parent": parent_of(msg), "content": msg.get("content") or {},
                 "metadata": msg.get("metadata") or {}, "buffers": _b64(msg.get("buffers"))}
        data = jsonio.dumps(event)
        if len(data) <= self._max_bytes:  # else it is lost at once, and counted as dropped
            self._events.append((seq, data))
            self._bytes += len(data)
            while len(self._events) > self._max_events or self._bytes > self._max_bytes:
                _seq, old = self._events.popleft()
                self._bytes -= len(old)
        self._wake()

    def check_cursor(self, cursor: int) -> None:
        if cursor > self._next:
            raise bad_params(f"'cursor' {cursor} is beyond this session's events (the next one is {self._next}); "
                             "a new session's cursor starts at 0")

    def _ack(self, cursor: int) -> None:
        while self._events and self._events[0][0] < cursor:
            _seq, data = self._events.popleft()
            self._bytes -= len(data)

    async def fetch(self, cursor: int, wait: float) -> bytes | None:
        """The answer to a poll from ``cursor`` (JSON bytes), as soon as there is an event at or
        after it, else after ``wait`` seconds; None when the log was closed meanwhile."""
        self._ack(cursor)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self._next <= cursor and not self.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        if self.closed:
            return None
        return self._answer(cursor)

    def _answer(self, cursor: int) -> bytes:
        chosen: list[bytes] = []
        size = 0
        first = last = None
        for seq, data in self._events:
            if seq < cursor:
                continue  # acknowledged by a concurrent poll's larger cursor meanwhile
            if chosen and (len(chosen) >= MAX_ANSWER_EVENTS or size + len(data) > MAX_ANSWER_BYTES):
                break
            chosen.append(data)
            size += len(data)
            first = seq if first is None else first
            last = seq
        next_cursor = last + 1 if last is not None else max(cursor, self._next)
        dropped = (first if first is not None else next_cursor) - cursor
        return b'{"events":[' + b",".join(chosen) + b'],"cursor":%d,"dropped":%d}' % (next_cursor, dropped)
