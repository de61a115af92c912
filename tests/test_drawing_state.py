"""Canvas state across payloads: later payloads update objects created earlier."""

from __future__ import annotations

import json

import pytest

from remote_kernel.drawing.canvas import CanvasStore
from remote_kernel.drawing.codec import DrawingError, decode_payload

EXAMPLE_B64 = ("k5YApmNhbnZhc8zIZKkjZmZmZmZmZmapIzAwMDAwMGZmlACjb2JqAJakbGluZQoKzL5aqSMwMDAwMDBmZpQAo29i"
               "agGXpmNpcmNsZTIyFKkjMDAwMDAwZmapI2ZmMDAwMGZmAA==")
EXAMPLE_2 = [[0, "begin-group"], [0, "update", 1, "x", 150], [0, "update", 1, "rotate", 45],
             [0, "end-group"], [0, "update", 1, "fill", "#0000ff80"]]


def apply(store, commands):
    return store.apply(decode_payload(json.dumps(commands)))


def test_second_example_updates_objects_of_the_first_payload():
    store = CanvasStore()
    (first,) = store.apply(decode_payload(EXAMPLE_B64))
    assert first.new_from == 0 and len(first.canvas.commands) == 3
    (second,) = apply(store, EXAMPLE_2)
    c = second.canvas
    assert c is first.canvas
    assert second.new_from == 3  # the renderer animates only commands[3:]
    assert len(c.commands) == 8
    circle = c.objects[1]
    assert (circle["x"], circle["y"], circle["radius"]) == (150, 50, 20)
    assert circle["angle"] == 45
    assert circle["fill"] == "#0000ff80" and circle["border"] == "#000000ff"
    assert c.objects[0] == {"kind": "line", "x1": 10, "y1": 10, "x2": 190, "y2": 90,
                            "color": "#000000ff", "angle": 0}
    # rotate is relative, angle absolute
    apply(store, [[0, "update", 1, "rotate", 30]])
    assert circle["angle"] == 75
    apply(store, [[0, "update", 1, "angle", 10]])
    assert circle["angle"] == 10


def test_update_of_unknown_object_or_canvas_is_an_error_and_changes_nothing():
    store = CanvasStore()
    store.apply(decode_payload(EXAMPLE_B64))
    before = len(store.canvases[0].commands)
    with pytest.raises(DrawingError, match=r"^command 1: canvas 0 has no object 7 to update$"):
        apply(store, [[0, "update", 1, "x", 99], [0, "update", 7, "x", 1]])
    # atomic: the valid first command was not applied either
    assert store.canvases[0].objects[1]["x"] == 50
    assert len(store.canvases[0].commands) == before
    with pytest.raises(DrawingError, match=r"^command 0: canvas 4 does not exist"):
        apply(store, [[4, "end-group"]])
    with pytest.raises(DrawingError, match=r"^command 0: object 0 is a line, which has no property 'radius'$"):
        apply(store, [[0, "update", 0, "radius", 3]])
    with pytest.raises(DrawingError, match=r"object 1 is a circle, which has no property 'color'"):
        apply(store, [[0, "update", 1, "color", "#000000ff"]])


def test_objects_created_earlier_in_the_same_payload_can_be_updated():
    store = CanvasStore()
    (u,) = apply(store, [[0, "canvas", 50, 50, "#ffffffff", "#000000ff"],
                         [0, "obj", 0, ["rect", 5, 5, 2, 2, "#000000ff", "#ffffff00", 0]],
                         [0, "update", 0, "x", 9]])
    assert u.canvas.objects[0]["x"] == 9


def test_canvas_command_restarts_the_canvas():
    store = CanvasStore()
    store.apply(decode_payload(EXAMPLE_B64))
    (u,) = apply(store, [[0, "update", 1, "x", 1],
                         [0, "canvas", 30, 40, "#000000ff", "#ffffffff"],
                         [0, "obj", 0, ["circle", 1, 2, 3, "#ffffffff", "#ffffff00", 0]]])
    assert u.new_from == 0
    assert (u.canvas.width, u.canvas.height) == (30, 40)
    assert list(u.canvas.objects) == [0] and u.canvas.objects[0]["kind"] == "circle"
    assert [c[1] for c in u.canvas.commands] == ["canvas", "obj"]
    # after a restart, objects of the old canvas are gone
    with pytest.raises(DrawingError, match="canvas 0 has no object 1"):
        apply(store, [[0, "update", 1, "x", 1]])


def test_one_update_per_canvas_in_order_of_first_appearance():
    store = CanvasStore()
    updates = apply(store, [[1, "canvas", 10, 10, "#ffffffff", "#000000ff"],
                            [0, "canvas", 20, 20, "#ffffffff", "#000000ff"],
                            [1, "bgcolor", "#ff0000ff"], [0, "fgcolor", "#00ff00ff"]])
    assert [u.canvas.cid for u in updates] == [1, 0]
    assert store.canvases[1].bgcolor == "#ff0000ff" and store.canvases[0].fgcolor == "#00ff00ff"


def test_fill_collects_the_lines_between_begin_and_end_fill():
    store = CanvasStore()
    (u,) = apply(store, [[0, "canvas", 100, 100, "#ffffffff", "#000000ff"],
                         [0, "begin-fill", "#00ff00ff"],
                         [0, "obj", 0, ["line", 10, 10, 90, 10, "#000000ff"]],
                         [0, "obj", 1, ["line", 90, 10, 90, 90, "#000000ff"]],
                         [0, "obj", 2, ["line", 90, 90, 10, 10, "#000000ff"]]])
    c = u.canvas
    fill = c.items[0]
    assert fill["kind"] == "fill" and fill["lines"] == [0, 1, 2]
    assert fill not in list(c.visible_items())  # not shown before end-fill
    apply(store, [[0, "end-fill"], [0, "obj", 3, ["line", 0, 0, 1, 1, "#000000ff"]]])
    assert fill["lines"] == [0, 1, 2]  # lines after end-fill do not join
    assert list(c.visible_items())[0] is fill
    assert c.fill_points(fill) == [(10, 10), (90, 10), (90, 90)]
    # the polygon follows later updates of its lines
    apply(store, [[0, "update", 1, "y2", 50], [0, "update", 2, "y1", 50]])
    assert c.fill_points(fill) == [(10, 10), (90, 10), (90, 50)]


def test_obj_with_an_existing_id_replaces_it_in_place():
    store = CanvasStore()
    apply(store, [[0, "canvas", 100, 100, "#ffffffff", "#000000ff"],
                  [0, "obj", 0, ["circle", 1, 1, 1, "#000000ff", "#ffffff00", 0]],
                  [0, "obj", 1, ["circle", 2, 2, 2, "#000000ff", "#ffffff00", 0]],
                  [0, "obj", 0, ["rect", 3, 3, 3, 3, "#000000ff", "#ffffff00", 0]]])
    c = store.canvases[0]
    assert c.object_count == 2
    assert [i["kind"] for i in c.items] == ["rect", "circle"]
