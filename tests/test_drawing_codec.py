"""Decoding drawing payloads: the reference's examples in both forms, and precise errors."""

from __future__ import annotations

import base64
import json

import msgpack
import pytest

from remote_kernel.drawing.codec import DrawingError, decode_payload, encode_commands

# docs/DRAWING.md#an-example: Canvas(200, 100); line(10, 10, 190, 90); circle(50, 50, 20, fill=Red)
EXAMPLE_B64 = ("k5YApmNhbnZhc8zIZKkjZmZmZmZmZmapIzAwMDAwMGZmlACjb2JqAJakbGluZQoKzL5aqSMwMDAwMDBmZpQAo29i"
               "agGXpmNpcmNsZTIyFKkjMDAwMDAwZmapI2ZmMDAwMGZmAA==")
EXAMPLE = [[0, "canvas", 200, 100, "#ffffffff", "#000000ff"],
           [0, "obj", 0, ["line", 10, 10, 190, 90, "#000000ff"]],
           [0, "obj", 1, ["circle", 50, 50, 20, "#000000ff", "#ff0000ff", 0]]]
EXAMPLE_2 = [[0, "begin-group"], [0, "update", 1, "x", 150], [0, "update", 1, "rotate", 45],
             [0, "end-group"], [0, "update", 1, "fill", "#0000ff80"]]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_reference_base64_payload_decodes_to_reference_commands():
    assert decode_payload(EXAMPLE_B64) == EXAMPLE


def test_reference_json_text_form_decodes_to_the_same_commands():
    text = json.dumps(EXAMPLE)
    assert decode_payload(text) == EXAMPLE
    assert decode_payload("  " + text + "\n") == EXAMPLE  # surrounding whitespace is fine
    assert decode_payload(text.encode("ascii")) == EXAMPLE  # bytes too


def test_second_example_decodes():
    assert decode_payload(encode_commands(EXAMPLE_2)) == EXAMPLE_2
    assert decode_payload(json.dumps(EXAMPLE_2)) == EXAMPLE_2


def test_encode_is_the_inverse_and_reproduces_reference_bytes():
    assert encode_commands(EXAMPLE) == EXAMPLE_B64


def test_every_command_kind_validates():
    cmds = [[3, "canvas", 10.5, 20, "#FFFFFF", "#000000ff"], [3, "stop-anim"], [3, "resume-anim"],
            [3, "begin-group"], [3, "end-group"], [3, "bgcolor", "#102030ff"],
            [3, "fgcolor", "#ABCDEF80"], [3, "begin-fill", "#00ff0080"], [3, "end-fill"],
            [3, "obj", 0, ["rect", 1, 2, 3, 4, "#000000ff", "#ffffff00", 5]],
            [3, "obj", 1, ["triangle", 1, 2, 3, 4, "#000000ff", "#ffffff00", -5.5]],
            *[[3, "update", 0, p, 1.5] for p in ("x", "y", "x1", "y1", "x2", "y2", "radius",
                                                  "rotate", "angle")],
            *[[3, "update", 0, p, "#010203ff"] for p in ("color", "border", "fill")]]
    out = decode_payload(json.dumps(cmds))
    assert len(out) == len(cmds)
    # colours are normalised to lowercase #rrggbbaa
    assert out[0][4:] == ["#ffffffff", "#000000ff"]
    assert out[6] == [3, "fgcolor", "#abcdef80"]


@pytest.mark.parametrize("payload, message", [
    ("not*base64!", "payload is not valid base64"),
    ("abc", "payload is not valid base64: Incorrect padding"),
    ("", "payload is empty"),
    (b64(b"\xc1"), "payload is not valid msgpack: invalid type byte"),
    (b64(b"\x93\x01"), "payload is not valid msgpack: truncated data"),
    (b64(b"\x91\x01\x02"), "payload is not valid msgpack: extra bytes after the command list"),
    ("[[0, \"canvas\",", "payload is not valid JSON"),
    (b64(msgpack.packb({"a": 1})), "payload must be a list of commands, got dict"),
    ('{"canvas": 0}', "payload must be a list of commands, got dict"),
    (b64(msgpack.packb(7)), "payload must be a list of commands, got int"),
    (b"\xff\xfe", "payload is not ASCII text"),
    (None, "payload must be a string, got null"),
])
def test_malformed_payloads_have_precise_messages(payload, message):
    with pytest.raises(DrawingError) as err:
        decode_payload(payload)
    assert str(err.value).startswith(message), str(err.value)


CANVAS = [0, "canvas", 200, 100, "#ffffffff", "#000000ff"]


@pytest.mark.parametrize("bad, message", [
    # unknown command / shape / property
    ([0, "explode"], "command 1: unknown command 'explode'"),
    ([0, "obj", 2, ["hexagon", 1, 2]], "command 1: unknown shape 'hexagon'"),
    ([0, "update", 1, "colour", "#000000ff"], "command 1: unknown property 'colour' in 'update'"),
    # wrong arity
    ([0, "update", 1, "x"], "command 1: 'update' takes 5 elements, got 4"),
    ([0, "end-group", 1], "command 1: 'end-group' takes 2 elements, got 3"),
    ([0, "obj", 0, ["line", 1, 2, 3, "#000000ff"]], "command 1: shape 'line' takes 6 elements, got 5"),
    ([0, "canvas", 1, 2], "command 1: 'canvas' takes 6 elements, got 4"),
    ([0], "command 1 must have at least a canvas id and a name, got [0]"),
    # wrong types
    ("end-group", "command 1 must be a list, got str 'end-group'"),
    ([0, "update", 1, "x", "150"], "command 1: 'x' value must be a number, got str '150'"),
    ([0, "update", 1, "fill", "blue"], "command 1: 'fill' value must be a colour '#rrggbbaa', got 'blue'"),
    ([0, "update", 1, "x", True], "command 1: 'x' value must be a number, got bool True"),
    ([0, "update", -1, "x", 1], "command 1: object id must be a non-negative integer, got -1"),
    (["0", "end-group"], "command 1: canvas id must be a non-negative integer, got '0'"),
    ([0, 5], "command 1: name must be a string, got int 5"),
    ([0, "obj", 0, ["circle", 1, None, 3, "#000000ff", "#000000ff", 0]],
     "command 1: circle y must be a number, got null None"),
    ([0, "obj", 0, ["rect", 1, 2, 3, 4, "#000000ff", 255, 0]],
     "command 1: rect fill must be a colour '#rrggbbaa', got 255"),
    ([0, "bgcolor", "#12345"], "command 1: 'bgcolor' colour must be a colour '#rrggbbaa', got '#12345'"),
    ([0, "canvas", 0, 100, "#ffffffff", "#000000ff"], "command 1: canvas size must be within"),
])
def test_malformed_commands_have_precise_messages(bad, message):
    with pytest.raises(DrawingError) as err:
        decode_payload(encode_commands([CANVAS, bad]))
    assert str(err.value).startswith(message), str(err.value)


def test_non_finite_numbers_are_rejected():
    raw = msgpack.packb([[0, "update", 0, "x", float("nan")]])
    with pytest.raises(DrawingError, match="command 0: 'x' value must be a finite number"):
        decode_payload(b64(raw))


def test_msgpack_extension_types_are_not_lists():
    raw = msgpack.packb([msgpack.ExtType(5, b"ab")])
    with pytest.raises(DrawingError, match="command 0 must be a list, got msgpack extension type 5"):
        decode_payload(b64(raw))
