"""Pure translation of console records into Jupyter iopub messages.

``translate(record, ctx)`` → a list of ``(msg_type, content)``; nothing here does I/O, so the
kernel can send the result from whichever thread runs the execute loop.  Media types go through
one registry (``register_media_type``) so that other parts (drawings) plug in their translator.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from remote_kernel import protocol

log = logging.getLogger(__name__)

Message = tuple[str, dict]
MediaTranslator = Callable[[Any, "OutputContext"], list[Message]]


@dataclass
class OutputContext:
    """State a translator may keep: ``cell`` is reset per cell, ``session`` when the remote
    session changes (drawings keep their canvases there)."""

    cell: dict = field(default_factory=dict)
    session: dict = field(default_factory=dict)
    execution_count: int | None = None

    def new_cell(self, execution_count: int | None = None) -> None:
        self.cell = {}
        self.execution_count = execution_count

    def new_session(self) -> None:
        self.session = {}
        self.cell = {}


# ---- the media registry ----------------------------------------------------------------------

_MEDIA: dict[str, MediaTranslator] = {}


def register_media_type(mime: str, translator: MediaTranslator) -> None:
    """Route ``["media", [mime, data]]`` records to ``translator(data, ctx)``."""
    _MEDIA[mime.lower()] = translator


def media_translator(mime: str) -> MediaTranslator:
    return _MEDIA.get(mime.lower(), translate_generic_media)


def display(data: dict, metadata: dict | None = None, transient: dict | None = None) -> Message:
    """A ``display_data`` of a bundle the bridge makes from a classic record: it gets a
    text/plain fallback, as a kernel's own displays have one (records from our extensions keep
    their bundle as the inner kernel sent it)."""
    bundle = sanitize_bundle(data)
    if not isinstance(bundle.get("text/plain"), str):
        bundle["text/plain"] = f"<{', '.join(sorted(bundle)) or 'empty'} output>"
    return ("display_data", {"data": bundle, "metadata": _as_dict(metadata), "transient": _as_dict(transient)})


# nbformat's mimebundle: these types hold any JSON, every other type a string (or list of strings)
_JSON_MIME_RE = re.compile(r"^application/(.*\+)?json$")


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _as_dict(value: Any) -> dict:
    return dict(value) if isinstance(value, dict) and _is_json(value) else {}


def sanitize_bundle(data: Any) -> dict:
    """A mime bundle a notebook can store: invalid entries dropped.  (A remote may send
    anything; a bundle nbformat rejects would make the notebook unsavable.)  A valid bundle
    passes as it is — a direct kernel adds no text/plain, so neither do we — and only one
    whose every entry was dropped says so in text/plain."""
    bundle: dict = {}
    for mime, value in (data.items() if isinstance(data, dict) else ()):
        if not isinstance(mime, str) or not mime:
            continue
        if _JSON_MIME_RE.match(mime):
            ok = _is_json(value)
        else:
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if ok:
            bundle[mime] = value
        else:
            log.debug("display bundle entry %r with an invalid value dropped", mime)
    if not bundle and data:
        dropped = ", ".join(sorted(str(k) for k in data)) if isinstance(data, dict) else type(data).__name__
        bundle["text/plain"] = f"<{dropped} output that could not be shown>"
    return bundle


def _sanitize(message: Message) -> Message | None:
    """The last check on every outgoing display message (any translator, ours or registered)."""
    msg_type, content = message
    if msg_type not in ("display_data", "execute_result", "update_display_data") or not isinstance(content, dict):
        return message
    clean = {"data": sanitize_bundle(content.get("data")), "metadata": _as_dict(content.get("metadata"))}
    transient = _as_dict(content.get("transient"))
    if "display_id" in transient and not (isinstance(transient["display_id"], str) and transient["display_id"]):
        del transient["display_id"]
    if msg_type == "update_display_data" and "display_id" not in transient:
        return None  # an update of nothing
    if msg_type == "execute_result":
        count = content.get("execution_count")
        clean["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None
        if transient:
            clean["transient"] = transient
    else:
        clean["transient"] = transient
    return msg_type, clean


def _strip_data_uri(value: str) -> tuple[str | None, str]:
    """``data:image/png;base64,XXXX`` → (``image/png``, ``XXXX``); other text → (None, text)."""
    if not value.startswith("data:") or "," not in value:
        return None, value
    header, payload = value[5:].split(",", 1)
    parts = header.split(";")
    mime = parts[0] or None
    if "base64" not in parts[1:]:
        # a percent/plain-encoded data URI: Jupyter wants base64 for binary types
        from urllib.parse import unquote_to_bytes

        payload = base64.b64encode(unquote_to_bytes(payload)).decode("ascii")
    return mime, "".join(payload.split())


def _is_text_type(mime: str) -> bool:
    return (mime.startswith("text/") or mime == "image/svg+xml"
            or mime.endswith("+json") or mime.endswith("/json") or mime.endswith("+xml")
            or mime == "application/javascript")


def translate_generic_media(data: Any, ctx: OutputContext, mime: str = "") -> list[Message]:
    """Text types pass as they are; binary ones arrive as data URIs and go out as bare base64."""
    if not isinstance(data, str):
        if mime.endswith("json") and isinstance(data, (dict, list)):
            return [display({mime: data})]
        log.debug("media %s with a non-text payload ignored", mime)
        return [display({"text/plain": f"<{mime or 'media'} output that could not be shown>"})]
    uri_mime, payload = _strip_data_uri(data)
    if _is_text_type(mime) and uri_mime is None:
        return [display({mime: data})]
    if uri_mime is not None and _is_text_type(mime):
        try:  # a text type sent as a data URI: decode back to text
            return [display({mime: base64.b64decode(payload).decode("utf-8")})]
        except (binascii.Error, UnicodeDecodeError):
            pass
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        log.debug("media %s payload is neither a data URI nor base64", mime)
        return [display({"text/plain": f"<{mime} output with an undecodable payload>"})]
    return [display({mime: payload, "text/plain": f"<{mime} image>" if mime.startswith("image/") else f"<{mime} output>"})]


def translate_sorna_drawing(data: Any, ctx: OutputContext) -> list[Message]:
    """Drawings go to the drawing package's translator; a short text line if it is missing."""
    try:
        from remote_kernel.drawing.jupyter import translate_drawing
    except Exception:  # the drawing part is optional
        log.debug("drawing translator unavailable", exc_info=True)
        return [display({"text/plain": "<drawing (install remote_kernel's drawing support to see it)>"})]
    return translate_drawing(data, ctx)


register_media_type(protocol.MIME_SORNA_DRAWING, translate_sorna_drawing)


# ---- records → messages ----------------------------------------------------------------------

def translate(kind: str, data: Any, ctx: OutputContext) -> list[Message]:
    """One console record → the iopub messages to send (possibly none)."""
    try:
        messages = _translate(kind, data, ctx)
        return [clean for clean in map(_sanitize, messages) if clean is not None]
    except Exception:  # a malformed record must never take the kernel down
        log.debug("record %r could not be translated", kind, exc_info=True)
        return []


def _translate(kind: str, data: Any, ctx: OutputContext) -> list[Message]:
    if kind in ("stdout", "stderr"):
        text = data if isinstance(data, str) else str(data)
        return [("stream", {"name": kind, "text": text})] if text else []
    if kind == "media":
        if not (isinstance(data, (list, tuple)) and len(data) >= 2 and isinstance(data[0], str)):
            log.debug("malformed media record ignored")
            return []
        mime, payload = data[0].strip().lower(), data[1]
        translator = _MEDIA.get(mime)
        if translator is None:
            return translate_generic_media(payload, ctx, mime)
        return list(translator(payload, ctx))
    if kind == "html":
        return [display({"text/html": data if isinstance(data, str) else str(data), "text/plain": "<HTML output>"})]
    if kind == "display":
        return _translate_display(data, ctx)
    if kind == "clear":
        wait = bool(data.get("wait", False)) if isinstance(data, dict) else False
        return [("clear_output", {"wait": wait})]
    if kind == "error":
        return [("error", error_content(data))]
    log.debug("unknown console record kind %r ignored", kind)
    return []


def _translate_display(data: Any, ctx: OutputContext) -> list[Message]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return []
    output_type = data.get("output_type", "display_data")
    bundle = dict(data["data"])
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    transient = data.get("transient") if isinstance(data.get("transient"), dict) else {}
    if output_type == "execute_result":
        # Out[n] must match this kernel's In[n], not the inner kernel's own counter.
        count = ctx.execution_count if ctx.execution_count is not None else data.get("execution_count")
        result = {"data": bundle, "metadata": metadata, "execution_count": count}
        if transient:  # a display_id lets a later update_display_data reach this output
            result["transient"] = transient
        return [("execute_result", result)]
    if output_type == "update_display_data":
        if not transient.get("display_id"):
            return []
        return [("update_display_data", {"data": bundle, "metadata": metadata, "transient": transient})]
    return [("display_data", {"data": bundle, "metadata": metadata, "transient": transient})]


def error_content(data: Any) -> dict:
    """An extension error record → the fields of an ``error`` message / error reply."""
    if not isinstance(data, dict):
        data = {}
    ename = str(data.get("ename") or "Error")
    evalue = str(data.get("evalue") or "")
    traceback = data.get("traceback")
    if not isinstance(traceback, list) or not traceback:
        traceback = [f"{ename}: {evalue}"]
    return {"ename": ename, "evalue": evalue, "traceback": [str(line) for line in traceback]}


def make_error(ename: str, evalue: str, traceback: list[str] | None = None) -> dict:
    """A locally made error; the traceback is the red one-liner users see."""
    return {"ename": ename, "evalue": evalue,
            "traceback": traceback or [f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]}


# ---- stream coalescing -----------------------------------------------------------------------

def coalesce(messages: Iterable[Message]) -> list[Message]:
    """Merge consecutive stream chunks of one stream into one message, keeping the order, so
    a chatty cell sends a few large messages instead of flooding iopub's rate limit."""
    out: list[Message] = []
    pieces: list[str] = []  # texts of the stream message being built, joined once (not quadratic)
    for msg_type, content in messages:
        if (msg_type == "stream" and out and out[-1][0] == "stream" and pieces
                and out[-1][1]["name"] == content["name"]):
            pieces.append(content["text"])
            continue
        if pieces:
            out[-1] = ("stream", {"name": out[-1][1]["name"], "text": "".join(pieces)})
        pieces = [content["text"]] if msg_type == "stream" else []
        out.append((msg_type, content))
    if pieces:
        out[-1] = ("stream", {"name": out[-1][1]["name"], "text": "".join(pieces)})
    return out


class StreamBuffer:
    """Holds stream text until it is worth sending: a non-stream message, a size limit or the
    caller's flush (once per HTTP result).  Keeps output order across message kinds."""

    def __init__(self, max_chars: int = 64 * 1024):
        self.max_chars = max_chars
        self._pending: list[Message] = []
        self._size = 0

    def push(self, messages: Iterable[Message]) -> list[Message]:
        """Add messages; return those ready to send now."""
        ready: list[Message] = []
        for msg in messages:
            if msg[0] == "stream":
                self._pending.append(msg)
                self._size += len(msg[1]["text"])
                if self._size >= self.max_chars:
                    ready.extend(self.flush())
            else:
                ready.extend(self.flush())
                ready.append(msg)
        return ready

    def flush(self) -> list[Message]:
        pending, self._pending, self._size = self._pending, [], 0
        return coalesce(pending)
