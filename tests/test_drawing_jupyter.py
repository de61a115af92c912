"""The kernel-facing translator: display ids per cell, bundles, error outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import nbformat
import pytest

from remote_kernel.drawing.codec import encode_commands
from remote_kernel.drawing.jupyter import translate_drawing
from remote_kernel.protocol import MIME_DRAWING_JSON

EXAMPLE_B64 = ("k5YApmNhbnZhc8zIZKkjZmZmZmZmZmapIzAwMDAwMGZmlACjb2JqAJakbGluZQoKzL5aqSMwMDAwMDBmZpQAo29i"
               "agGXpmNpcmNsZTIyFKkjMDAwMDAwZmapI2ZmMDAwMGZmAA==")
EXAMPLE_2 = [[0, "begin-group"], [0, "update", 1, "x", 150], [0, "update", 1, "rotate", 45],
             [0, "end-group"], [0, "update", 1, "fill", "#0000ff80"]]


class Ctx:
    """What the bridge kernel passes: a per-session dict and a per-cell dict."""

    def __init__(self):
        self.session: dict = {}
        self.cell: dict = {}

    def next_cell(self):
        self.cell = {}


def test_first_payload_gives_a_display_with_the_full_bundle():
    ctx = Ctx()
    [(msg_type, content)] = translate_drawing(EXAMPLE_B64, ctx, now_ms=1764196000000)
    assert msg_type == "display_data"
    data = content["data"]
    assert data[MIME_DRAWING_JSON] == {
        "version": 1, "canvas": 0, "width": 200, "height": 100,
        "commands": [[0, "canvas", 200, 100, "#ffffffff", "#000000ff"],
                     [0, "obj", 0, ["line", 10, 10, 190, 90, "#000000ff"]],
                     [0, "obj", 1, ["circle", 50, 50, 20, "#000000ff", "#ff0000ff", 0]]],
        "newFrom": 0, "emittedAt": 1764196000000}
    assert data["text/plain"] == "<drawing canvas 0: 200×100, 2 objects>"
    ET.fromstring(data["image/svg+xml"])
    assert data["image/png"]  # Pillow is installed in the test env
    assert content["metadata"] == {"image/png": {"width": 200, "height": 100}}
    assert content["transient"]["display_id"].startswith("drawing-")
    # the bundle is valid as a notebook output (nbformat accepts the vnd ... +json type)
    out = nbformat.v4.new_output("display_data", data=data, metadata=content["metadata"])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[out])])
    nbformat.validate(nb)
    json.dumps(nb)


def test_same_cell_updates_the_display_and_a_later_cell_shows_the_whole_state():
    ctx = Ctx()
    [(_, first)] = translate_drawing(EXAMPLE_B64, ctx)
    [(msg_type, second)] = translate_drawing(encode_commands(EXAMPLE_2), ctx)
    assert msg_type == "update_display_data"
    assert second["transient"]["display_id"] == first["transient"]["display_id"]
    bundle = second["data"][MIME_DRAWING_JSON]
    assert bundle["newFrom"] == 3 and len(bundle["commands"]) == 8
    assert len(first["data"][MIME_DRAWING_JSON]["commands"]) == 3  # earlier bundle unchanged
    ctx.next_cell()
    [(msg_type, third)] = translate_drawing(encode_commands([[0, "update", 0, "x2", 20]]), ctx)
    assert msg_type == "display_data"
    assert third["transient"]["display_id"] != first["transient"]["display_id"]
    bundle = third["data"][MIME_DRAWING_JSON]
    assert bundle["newFrom"] == 8 and len(bundle["commands"]) == 9
    svg = ET.fromstring(third["data"]["image/svg+xml"])
    circle = [e for e in svg.iter() if e.get("data-oid") == "1"][0]
    assert circle.get("cx") == "150"  # the update of the earlier cell is part of the state


def test_a_payload_touching_two_canvases_gives_two_outputs():
    ctx = Ctx()
    msgs = translate_drawing(json.dumps([[0, "canvas", 10, 10, "#ffffffff", "#000000ff"],
                                         [1, "canvas", 20, 30, "#ffffffff", "#000000ff"],
                                         [0, "obj", 0, ["line", 0, 0, 5, 5, "#000000ff"]]]), ctx)
    assert [m[0] for m in msgs] == ["display_data", "display_data"]
    assert [m[1]["data"]["text/plain"] for m in msgs] == [
        "<drawing canvas 0: 10×10, 1 object>", "<drawing canvas 1: 20×30, 0 objects>"]
    assert msgs[0][1]["transient"] != msgs[1][1]["transient"]


def test_sessions_are_independent():
    a, b = Ctx(), Ctx()
    translate_drawing(EXAMPLE_B64, a)
    [(_, content)] = translate_drawing(encode_commands(EXAMPLE_2), b)
    assert content["data"]["text/plain"] == "drawing error: command 0: canvas 0 does not exist " \
                                            "(no 'canvas' command for it in this session)"


@pytest.mark.parametrize("payload, text", [
    ("%%%", "drawing error: payload is not valid base64: Only base64 data is allowed"),
    (encode_commands([[0, "wat"]]), "drawing error: command 0: unknown command 'wat'"),
    (42, "drawing error: payload must be a string, got int"),
])
def test_malformed_payload_gives_one_error_output_and_keeps_serving(payload, text):
    ctx = Ctx()
    [(msg_type, content)] = translate_drawing(payload, ctx)
    assert msg_type == "display_data"
    assert content["data"] == {"text/plain": text}
    # the session goes on working
    [(msg_type, _)] = translate_drawing(EXAMPLE_B64, ctx)
    assert msg_type == "display_data"


def test_error_leaves_state_untouched():
    ctx = Ctx()
    translate_drawing(EXAMPLE_B64, ctx)
    [(_, content)] = translate_drawing(encode_commands([[0, "update", 1, "x", 7],
                                                        [0, "update", 9, "x", 7]]), ctx)
    assert content["data"]["text/plain"] == "drawing error: command 1: canvas 0 has no object 9 to update"
    [(_, content)] = translate_drawing(encode_commands([[0, "end-group"]]), ctx)
    svg = ET.fromstring(content["data"]["image/svg+xml"])
    assert [e.get("cx") for e in svg.iter() if e.get("data-oid") == "1"] == ["50"]


def test_already_parsed_json_list_is_accepted():
    ctx = Ctx()
    [(msg_type, _)] = translate_drawing([[0, "canvas", 5, 5, "#ffffffff", "#000000ff"]], ctx)
    assert msg_type == "display_data"


def test_no_png_without_pillow(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):  # Pillow is an optional extra
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    [(_, content)] = translate_drawing(EXAMPLE_B64, Ctx())
    assert "image/png" not in content["data"] and content["metadata"] == {}
    assert set(content["data"]) == {MIME_DRAWING_JSON, "image/svg+xml", "text/plain"}
