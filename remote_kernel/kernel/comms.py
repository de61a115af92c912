"""The rest of the Jupyter conversation: comm messages both ways, and what the inner kernel says
between cells — our ``jupyter-comms`` extension (docs/PROTOCOL.md#our-extensions-jupyter-comms).

* Frontend → kernel: ``comm_open``/``comm_msg``/``comm_close`` go to the inner kernel with the
  frontend's own msg_id, so whatever the handler outputs comes back under that request.
* Kernel → frontend, during a cell: comm records arrive in the run, in order with its outputs
  (``cell.py`` publishes them).  Between cells (a slider moved later, a thread updating a
  progress bar), :class:`EventFollower` long-polls the session's event stream and hands each
  message on, to be published under the header of the request that caused it.
* Every request the bridge forwards carries the frontend's msg_id, so inner messages name their
  parent by the frontend's own id: ipywidgets' ``Output`` widget, which captures by parent
  msg_id, works unchanged.  :class:`ParentHeaders` turns those ids back into headers.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from remote_kernel.client import errors

log = logging.getLogger(__name__)

COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
# What an inner kernel may say between cells that a frontend shows or acts on.
EVENT_TYPES = COMM_TYPES | {"stream", "display_data", "update_display_data", "execute_result", "error",
                           "clear_output"}
# ipywidgets' frontend opens this comm as soon as it connects, notebook or not.
WIDGET_CONTROL_TARGET = "jupyter.widget.control"

EVENTS_WAIT = 20.0  # seconds one long poll of the event stream may be held
RETRY_PAUSE = 1.0   # after a failed poll, or while there is no session to follow


@dataclass(frozen=True)
class InnerMessage:
    """One message of the inner kernel, to publish as the bridge's own."""

    msg_type: str
    content: dict
    metadata: dict = field(default_factory=dict)
    buffers: tuple[bytes, ...] = ()
    parent_id: str | None = None


def encode_buffers(buffers: Any) -> list[str]:
    """A message's binary buffers (bytes, memoryviews, zmq frames) as base64 strings."""
    encoded = []
    for buffer in buffers or ():
        raw = buffer.bytes if hasattr(buffer, "bytes") else bytes(buffer)
        encoded.append(base64.b64encode(raw).decode("ascii"))
    return encoded


def decode_buffers(items: Any) -> tuple[bytes, ...] | None:
    """Base64 strings back to bytes; ``None`` when they are malformed."""
    if not isinstance(items, list):
        return None
    try:
        return tuple(base64.b64decode(item, validate=True) for item in items)
    except (binascii.Error, TypeError, ValueError):
        return None


def inner_message(item: Any) -> InnerMessage | None:
    """A comm record's data or an event, checked; ``None`` for anything malformed or of a type
    the frontend has no use for (the stream must keep flowing past it)."""
    if not isinstance(item, dict) or item.get("msg_type") not in EVENT_TYPES:
        return None
    content = item.get("content")
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    buffers = decode_buffers(item.get("buffers", []))
    parent = item.get("parent")
    if not isinstance(content, dict) or buffers is None:
        return None
    if item["msg_type"] in COMM_TYPES and not isinstance(content.get("comm_id"), str):
        return None
    return InnerMessage(item["msg_type"], content, metadata, buffers, parent if isinstance(parent, str) else None)


def comm_request(header: dict, content: dict, metadata: dict, buffers: Any) -> dict:
    """The body that forwards a frontend's comm message to the inner kernel."""
    return {"msg_type": header["msg_type"], "msgId": header["msg_id"], "content": content,
            "metadata": metadata or {}, "buffers": encode_buffers(buffers)}


class ParentHeaders:
    """The headers of the frontend's recent requests by msg_id: the parent of whatever the
    inner kernel says about them, even long after (a bounded memory, oldest forgotten)."""

    def __init__(self, limit: int = 2048):
        self._limit = limit
        self._headers: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, header: dict) -> None:
        msg_id = header.get("msg_id")
        if not isinstance(msg_id, str):
            return
        with self._lock:
            self._headers[msg_id] = header
            self._headers.move_to_end(msg_id)
            while len(self._headers) > self._limit:
                self._headers.popitem(last=False)

    def parent_of(self, msg_id: str | None) -> dict:
        """A parent message for ``Session.send``: ``{"header": ...}`` or ``{}`` when unknown."""
        with self._lock:
            header = self._headers.get(msg_id) if msg_id else None
        return {"header": header} if header is not None else {}


class EventFollower:
    """Follows the current session's event stream in a background thread.

    ``target()`` says what to follow: ``(client_factory, session name, generation)``, or
    ``None`` while there is no session with the extension.  A new generation (the session was
    re-created) starts from the new stream's beginning; a lost answer is asked again from the
    same cursor, so nothing is lost or doubled.
    """

    def __init__(self, target: Callable[[], tuple[Callable[[], Any], str, int] | None],
                 deliver: Callable[[InnerMessage], None], wait: float = EVENTS_WAIT,
                 settle: Callable[[], None] | None = None):
        self._target = target
        self._deliver = deliver
        self._settle = settle  # after a batch was delivered, before the next poll
        self._wait = wait
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="remote-events", daemon=True)
        self._client = None
        self._following: tuple[str, int] | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._delivered = threading.Condition()
        self.cursor = 0

    def start(self) -> None:
        """Begin following (once; later calls do nothing)."""
        with self._start_lock:
            if not self._started and not self._stop.is_set():
                self._started = True
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._delivered:
            self._delivered.notify_all()

    def wait_delivered(self, name: str, cursor: int, timeout: float) -> bool:
        """Wait until every event of session ``name`` before ``cursor`` was handed on (a comm
        handler's output before the kernel says idle: a frontend stops capturing then)."""
        with self._delivered:
            return self._delivered.wait_for(
                lambda: self._stop.is_set() or (self._following is not None and self._following[0] == name
                                                and self.cursor >= cursor), timeout)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._poll_once():
                    self._stop.wait(RETRY_PAUSE)
            except Exception as exc:  # noqa: BLE001 - the follower must outlive any one failure
                log.debug("event stream: %s", exc, exc_info=True)
                self._stop.wait(RETRY_PAUSE)

    def _poll_once(self) -> bool:
        """One long poll; False when there was nothing to follow or it failed (pause first)."""
        target = self._target()
        if target is None:
            return False
        client_factory, name, generation = target
        if self._following != (name, generation):
            if self._client is not None:
                self._client.close()
            self._client, self._following, self.cursor = client_factory(), (name, generation), 0
        try:
            answer = self._client.events(name, self.cursor, self._wait)
        except errors.SessionNotFound:
            return False  # the next cell re-creates the session; follow the new one then
        except errors.APIError as exc:
            log.debug("event stream of %s: %s", name, exc)
            return False
        if self._stop.is_set():
            return True
        dropped = answer.get("dropped")
        if isinstance(dropped, int) and dropped > 0:
            log.warning("the server dropped %d events of session %s (its buffer was full)", dropped, name)
        delivered = False
        for event in answer.get("events") or []:
            message = inner_message(event)
            if message is not None:
                self._deliver(message)
                delivered = True
        if delivered and self._settle is not None:
            self._settle()
        cursor = answer.get("cursor")
        if isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= self.cursor:
            with self._delivered:
                self.cursor = cursor
                self._delivered.notify_all()
        return True
