"""Property tests: arbitrary payloads never crash the translator; valid drawings always render."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_kernel.drawing.codec import DrawingError, decode_payload, encode_commands
from remote_kernel.drawing.jupyter import translate_drawing

NAMES = ["canvas", "obj", "update", "begin-group", "end-group", "stop-anim", "resume-anim",
         "bgcolor", "fgcolor", "begin-fill", "end-fill", "bogus"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True),
                    st.sampled_from(NAMES + ["#ff0000ff", "#12", "x", "radius", "line", "circle",
                                             "rect", "triangle"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=8), max_leaves=30)
commands = st.lists(st.lists(values, max_size=8).map(lambda c: [0] + c), max_size=12)


class Ctx:
    def __init__(self):
        self.session, self.cell = {}, {}


def _check(msgs):
    assert isinstance(msgs, list)
    for msg_type, content in msgs:
        assert msg_type in ("display_data", "update_display_data")
        assert "internal error" not in content["data"]["text/plain"]
        if "image/svg+xml" in content["data"]:
            ET.fromstring(content["data"]["image/svg+xml"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_random_bytes_as_base64_never_crash(raw):
    _check(translate_drawing(base64.b64encode(raw).decode(), Ctx()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands)
def test_random_command_structures_decode_or_fail_precisely(cmds):
    ctx = Ctx()
    # a canvas first so that structurally valid commands get as far as the state
    translate_drawing(json.dumps([[0, "canvas", 50, 50, "#ffffffff", "#000000ff"]]), ctx)
    try:
        payload = encode_commands(cmds)
    except (OverflowError, ValueError, TypeError):
        return
    try:
        decode_payload(payload)
    except DrawingError as exc:
        assert str(exc)
    _check(translate_drawing(payload, ctx))


numbers = st.one_of(st.integers(-500, 500), st.floats(-500, 500, allow_nan=False))
colors = st.from_regex(r"#[0-9a-f]{8}", fullmatch=True)
shapes = st.one_of(
    st.tuples(st.just("line"), numbers, numbers, numbers, numbers, colors),
    st.tuples(st.just("circle"), numbers, numbers, numbers, colors, colors, numbers),
    st.tuples(st.sampled_from(["rect", "triangle"]), numbers, numbers, numbers, numbers, colors,
              colors, numbers),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shapes, min_size=1, max_size=20), st.lists(st.tuples(
    st.integers(0, 19), st.sampled_from(["rotate", "angle"]), numbers), max_size=20))
def test_valid_drawings_always_render(shape_list, rotations):
    cmds = [[0, "canvas", 300, 200, "#ffffffff", "#000000ff"], [0, "begin-fill", "#00ff0080"]]
    cmds += [[0, "obj", i, list(s)] for i, s in enumerate(shape_list)]
    cmds += [[0, "end-fill"]]
    cmds += [[0, "update", oid % len(shape_list), p, v] for oid, p, v in rotations]
    [(msg_type, content)] = translate_drawing(base64.b64encode(msgpack.packb(cmds)).decode(), Ctx())
    assert msg_type == "display_data"
    svg = ET.fromstring(content["data"]["image/svg+xml"])
    assert len([e for e in svg.iter() if e.get("data-oid") is not None]) == len(shape_list)
    assert content["data"]["text/plain"].endswith(f"{len(shape_list)} object"
                                                  f"{'' if len(shape_list) == 1 else 's'}>")
