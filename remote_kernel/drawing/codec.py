"""Decode `application/x-sorna-drawing` payloads into a validated command list (pure).

Two payload forms exist (docs/DRAWING.md#payload-encoding): the current
``base64(msgpack(commands))`` and the 2016 ``json.dumps(commands)``. Both decode to the same
list; every command is then checked for its name, arity and element types so that later stages
(state, SVG, PNG, the browser renderer) can trust the data. Colours are normalised to lowercase
``#rrggbbaa``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

import msgpack


class DrawingError(ValueError):
    """A payload or command that cannot be drawn; the message says exactly what is wrong."""


Command = list  # [cid, name, ...]

# Properties an `update` command may set, and the kind of value each takes.
NUMBER_PROPS = frozenset({"x", "y", "x1", "y1", "x2", "y2", "radius", "rotate", "angle"})
COLOR_PROPS = frozenset({"color", "border", "fill"})

# Commands without arguments beyond the canvas id.
BARE_COMMANDS = frozenset({"begin-group", "end-group", "stop-anim", "resume-anim", "end-fill"})
COLOR_COMMANDS = frozenset({"bgcolor", "fgcolor", "begin-fill"})
COMMAND_NAMES = BARE_COMMANDS | COLOR_COMMANDS | {"canvas", "obj", "update"}

# Shape argument layouts after the shape name: "n" number, "c" colour.
SHAPE_LAYOUTS = {
    "line": ("x1", "y1", "x2", "y2", "color"),
    "circle": ("x", "y", "radius", "border", "fill", "angle"),
    "rect": ("x", "y", "width", "height", "border", "fill", "angle"),
    "triangle": ("x", "y", "width", "height", "border", "fill", "angle"),
}
_COLOR_FIELDS = frozenset({"color", "border", "fill"})

_HEX_RE = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})\Z")
_MAX_PREVIEW = 40


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_PREVIEW else text[: _MAX_PREVIEW - 3] + "..."


def _type_name(value: Any) -> str:
    if isinstance(value, msgpack.ExtType):
        return f"msgpack extension type {value.code}"
    return "null" if value is None else type(value).__name__


def _is_list(value: Any) -> bool:
    # msgpack's ExtType is a namedtuple: not a command list
    return isinstance(value, (list, tuple)) and not isinstance(value, msgpack.ExtType)


def decode_payload(payload: str | bytes) -> list[Command]:
    """Decode either payload form and validate it; raises DrawingError."""
    commands = parse_payload(payload)
    return validate_commands(commands)


def parse_payload(payload: str | bytes) -> Any:
    """Payload text → raw Python structure (not yet validated)."""
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = bytes(payload).decode("ascii")
        except UnicodeDecodeError:
            raise DrawingError("payload is not ASCII text") from None
    if not isinstance(payload, str):
        raise DrawingError(f"payload must be a string, got {_type_name(payload)}")
    text = payload.strip()
    if not text:
        raise DrawingError("payload is empty")
    if text[0] in "[{":  # base64 never starts with these: this is the JSON form
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DrawingError(f"payload is not valid JSON: {exc.msg} at char {exc.pos}") from None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DrawingError(f"payload is not valid base64: {exc}") from None
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DrawingError(f"payload is not valid msgpack: {_msgpack_reason(exc)}") from None


def _msgpack_reason(exc: Exception) -> str:
    if isinstance(exc, msgpack.ExtraData):
        return "extra bytes after the command list"
    if isinstance(exc, msgpack.FormatError):
        return "invalid type byte"
    text = str(exc)
    if "incomplete" in text or "exceeds max_" in text:  # a declared length runs past the end
        return "truncated data"
    return text or type(exc).__name__


def encode_commands(commands: list) -> str:
    """The current wire form: ASCII base64 of msgpack (str/bin types distinguished)."""
    return base64.b64encode(msgpack.packb(commands, use_bin_type=True)).decode("ascii")


def normalize_color(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HEX_RE.match(value):
        raise DrawingError(f"{where} must be a colour '#rrggbbaa', got {_preview(value)}")
    value = value.lower()
    return value if len(value) == 9 else value + "ff"


def _number(value: Any, where: str) -> int | float:
    # bool is an int subclass but never a coordinate
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DrawingError(f"{where} must be a number, got {_type_name(value)} {_preview(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DrawingError(f"{where} must be a finite number, got {value!r}")
    return value


def _index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DrawingError(f"{where} must be a non-negative integer, got {_preview(value)}")
    return value


def _arity(cmd: list, n: int, where: str, name: str) -> None:
    if len(cmd) != n:
        raise DrawingError(f"{where}: '{name}' takes {n} elements, got {len(cmd)}")


def validate_command(cmd: Any, i: int) -> Command:
    """One raw command → normalised list; `i` is its index, for the message."""
    where = f"command {i}"
    if not _is_list(cmd):
        raise DrawingError(f"{where} must be a list, got {_type_name(cmd)} {_preview(cmd)}")
    if len(cmd) < 2:
        raise DrawingError(f"{where} must have at least a canvas id and a name, got {_preview(cmd)}")
    cid = _index(cmd[0], f"{where}: canvas id")
    name = cmd[1]
    if not isinstance(name, str):
        raise DrawingError(f"{where}: name must be a string, got {_type_name(name)} {_preview(name)}")
    if name not in COMMAND_NAMES:
        raise DrawingError(f"{where}: unknown command {_preview(name)}")
    if name in BARE_COMMANDS:
        _arity(cmd, 2, where, name)
        return [cid, name]
    if name in COLOR_COMMANDS:
        _arity(cmd, 3, where, name)
        return [cid, name, normalize_color(cmd[2], f"{where}: '{name}' colour")]
    if name == "canvas":
        _arity(cmd, 6, where, name)
        w = _number(cmd[2], f"{where}: canvas width")
        h = _number(cmd[3], f"{where}: canvas height")
        if w <= 0 or h <= 0 or w > 100_000 or h > 100_000:
            raise DrawingError(f"{where}: canvas size must be within 1..100000, got {w}×{h}")
        return [cid, name, w, h, normalize_color(cmd[4], f"{where}: background"),
                normalize_color(cmd[5], f"{where}: foreground")]
    if name == "obj":
        _arity(cmd, 4, where, name)
        oid = _index(cmd[2], f"{where}: object id")
        return [cid, name, oid, _validate_shape(cmd[3], where)]
    # update
    _arity(cmd, 5, where, name)
    oid = _index(cmd[2], f"{where}: object id")
    prop = cmd[3]
    if prop in NUMBER_PROPS:
        value = _number(cmd[4], f"{where}: '{prop}' value")
    elif prop in COLOR_PROPS:
        value = normalize_color(cmd[4], f"{where}: '{prop}' value")
    else:
        raise DrawingError(f"{where}: unknown property {_preview(prop)} in 'update'")
    return [cid, name, oid, prop, value]


def _validate_shape(shape: Any, where: str) -> list:
    if not _is_list(shape) or not shape:
        raise DrawingError(f"{where}: shape must be a non-empty list, got {_preview(shape)}")
    kind = shape[0]
    layout = SHAPE_LAYOUTS.get(kind) if isinstance(kind, str) else None
    if layout is None:
        raise DrawingError(f"{where}: unknown shape {_preview(kind)}")
    if len(shape) != len(layout) + 1:
        raise DrawingError(f"{where}: shape '{kind}' takes {len(layout) + 1} elements, got {len(shape)}")
    out: list = [kind]
    for field, value in zip(layout, shape[1:]):
        label = f"{where}: {kind} {field}"
        out.append(normalize_color(value, label) if field in _COLOR_FIELDS else _number(value, label))
    return out


def validate_commands(commands: Any) -> list[Command]:
    if not _is_list(commands):
        raise DrawingError(f"payload must be a list of commands, got {_type_name(commands)}")
    return [validate_command(cmd, i) for i, cmd in enumerate(commands)]
