"""Translate a drawing media record into Jupyter display messages (the kernel's media hook).

`translate_drawing(payload, ctx)` decodes the payload, applies it to the session's canvases and
returns one `(msg_type, content)` per canvas touched. Within one cell a canvas keeps one display
id, so its later updates are `update_display_data`; the next cell starts a fresh output that
carries the canvas's whole state. It never raises: a bad payload becomes a short error output.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from typing import Any

from remote_kernel.drawing import png as png_render
from remote_kernel.drawing.canvas import CanvasStore, CanvasUpdate
from remote_kernel.drawing.codec import DrawingError, decode_payload, validate_commands
from remote_kernel.drawing.svg import render_svg
from remote_kernel.protocol import MIME_DRAWING_JSON

log = logging.getLogger(__name__)

BUNDLE_VERSION = 1
SESSION_KEY = "drawing"           # ctx.session[SESSION_KEY]: the CanvasStore
CELL_KEY = "drawing_displays"     # ctx.cell[CELL_KEY]: canvas id → display id


def summary(update: CanvasUpdate) -> str:
    c = update.canvas
    n = c.object_count
    return (f"<drawing canvas {c.cid}: {_dim(c.width)}×{_dim(c.height)}, "
            f"{n} object{'' if n == 1 else 's'}>")


def _dim(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def build_bundle(update: CanvasUpdate, now_ms: int | None = None) -> tuple[dict, dict]:
    """The MIME bundle and metadata for one canvas after one payload."""
    c = update.canvas
    data: dict[str, Any] = {
        MIME_DRAWING_JSON: {
            "version": BUNDLE_VERSION,
            "canvas": c.cid,
            "width": c.width,
            "height": c.height,
            "commands": list(c.commands),  # a snapshot: the state's list keeps growing
            "newFrom": update.new_from,
            "emittedAt": int(time.time() * 1000) if now_ms is None else now_ms,
        },
        "image/svg+xml": render_svg(c),
        "text/plain": summary(update),
    }
    metadata: dict[str, Any] = {}
    png = png_render.render_png(c)
    if png is not None:
        data["image/png"] = base64.b64encode(png).decode("ascii")
        metadata["image/png"] = {"width": _dim_num(c.width), "height": _dim_num(c.height)}
    return data, metadata


def _dim_num(v: float) -> int:
    return max(1, round(v))


def error_output(message: str) -> list[tuple[str, dict]]:
    return [("display_data", {"data": {"text/plain": f"drawing error: {message}"},
                              "metadata": {}, "transient": {}})]


def translate_drawing(data: Any, ctx: Any, now_ms: int | None = None) -> list[tuple[str, dict]]:
    """Payload of an `application/x-sorna-drawing` media record → iopub messages."""
    try:
        # some servers hand the JSON form over already parsed
        commands = validate_commands(data) if isinstance(data, list) else decode_payload(data)
        store = ctx.session.get(SESSION_KEY)
        if store is None:
            store = ctx.session[SESSION_KEY] = CanvasStore()
        updates = store.apply(commands)
    except DrawingError as exc:
        return error_output(str(exc))
    except Exception as exc:  # a bug here must not take the kernel down
        log.exception("drawing payload could not be translated")
        return error_output(f"internal error ({type(exc).__name__}: {exc})")
    displays = ctx.cell.setdefault(CELL_KEY, {})
    messages: list[tuple[str, dict]] = []
    for update in updates:
        try:
            bundle, metadata = build_bundle(update, now_ms)
        except Exception as exc:
            log.exception("drawing could not be rendered")
            messages.extend(error_output(f"internal error ({type(exc).__name__}: {exc})"))
            continue
        cid = update.canvas.cid
        display_id = displays.get(cid)
        msg_type = "update_display_data"
        if display_id is None:
            display_id = displays[cid] = f"drawing-{uuid.uuid4().hex}"
            msg_type = "display_data"
        messages.append((msg_type, {"data": bundle, "metadata": metadata,
                                    "transient": {"display_id": display_id}}))
    return messages
