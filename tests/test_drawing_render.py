"""SVG (and PNG) of the final state: geometry parsed back, per shape."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest

from remote_kernel.drawing import png as png_render
from remote_kernel.drawing.canvas import CanvasStore
from remote_kernel.drawing.codec import decode_payload
from remote_kernel.drawing.svg import render_svg

NS = "{http://www.w3.org/2000/svg}"


def state(commands):
    store = CanvasStore()
    (u,) = store.apply(decode_payload(json.dumps(commands)))
    return store, u.canvas


def svg_of(canvas):
    root = ET.fromstring(render_svg(canvas))
    assert root.tag == NS + "svg"
    return root


def by_oid(root, oid):
    (el,) = [e for e in root.iter() if e.get("data-oid") == str(oid)]
    return el


def rotation(el):
    """(angle, cx, cy) of a transform="rotate(a cx cy)", or None."""
    t = el.get("transform")
    if t is None:
        return None
    m = re.fullmatch(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", t)
    assert m, t
    return tuple(float(v) for v in m.groups())


def points(el):
    return [tuple(float(v) for v in p.split(",")) for p in el.get("points").split()]


SHAPES = [[0, "canvas", 400, 300, "#ffffffff", "#000000ff"],
          [0, "obj", 0, ["line", 10, 20, 110, 70, "#00ff00ff"]],
          [0, "obj", 1, ["circle", 100, 100, 40, "#0000ffff", "#ff0000ff", 0]],
          [0, "obj", 2, ["rect", 200, 150, 80, 40, "#000000ff", "#ffff0080", 30]],
          [0, "obj", 3, ["triangle", 300, 100, 60, 90, "#ff00ffff", "#ffffff00", -45]]]


def test_canvas_size_and_background():
    _, c = state(SHAPES)
    root = svg_of(c)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("400", "300", "0 0 400 300")
    bg = root.find(NS + "rect")
    assert bg.get("class") == "background"
    assert (bg.get("width"), bg.get("height"), bg.get("fill")) == ("400", "300", "#ffffff")
    assert root.find(f"{NS}g").get("stroke-width") == "2"  # the original's stroke width
    assert all(e.get("id") is None for e in root.iter())  # no page-global ids


def test_line_endpoints_and_colour():
    _, c = state(SHAPES)
    el = by_oid(svg_of(c), 0)
    assert el.tag == NS + "line"
    assert [float(el.get(a)) for a in ("x1", "y1", "x2", "y2")] == [10, 20, 110, 70]
    assert el.get("stroke") == "#00ff00" and rotation(el) is None


def test_circle_is_centred_with_border_and_fill():
    _, c = state(SHAPES)
    el = by_oid(svg_of(c), 1)
    assert el.tag == NS + "circle"
    assert (float(el.get("cx")), float(el.get("cy")), float(el.get("r"))) == (100, 100, 40)
    assert (el.get("stroke"), el.get("fill")) == ("#0000ff", "#ff0000")


def test_rect_is_centred_rotated_clockwise_about_its_centre_with_alpha_fill():
    _, c = state(SHAPES)
    el = by_oid(svg_of(c), 2)
    x, y, w, h = (float(el.get(a)) for a in ("x", "y", "width", "height"))
    assert (x + w / 2, y + h / 2, w, h) == (200, 150, 80, 40)  # (left, top) is the centre
    assert rotation(el) == (30, 200, 150)  # SVG rotate() on y-down is clockwise
    assert el.get("fill") == "#ffff00" and float(el.get("fill-opacity")) == pytest.approx(128 / 255, abs=1e-3)
    assert el.get("stroke") == "#000000"


def test_triangle_is_isosceles_apex_up_in_its_box_centred_and_rotated():
    _, c = state(SHAPES)
    el = by_oid(svg_of(c), 3)
    assert el.tag == NS + "polygon" and el.get("data-shape") == "triangle"
    assert points(el) == [(300, 55), (330, 145), (270, 145)]  # apex, base right, base left
    assert rotation(el) == (-45, 300, 100)
    assert el.get("fill") == "none" and el.get("stroke") == "#ff00ff"  # Transparent fill


def test_updates_from_a_later_payload_show_in_the_svg():
    store, c = state(SHAPES)
    store.apply(decode_payload(json.dumps([
        [0, "update", 1, "x", 150], [0, "update", 1, "rotate", 45], [0, "update", 1, "fill", "#0000ff80"],
        [0, "update", 2, "rotate", 15], [0, "update", 0, "color", "#123456ff"],
        [0, "update", 0, "x2", 50], [0, "update", 1, "radius", 10], [0, "update", 3, "angle", 90],
        [0, "bgcolor", "#000000ff"]])))
    root = svg_of(c)
    circle = by_oid(root, 1)
    assert (float(circle.get("cx")), float(circle.get("r"))) == (150, 10)
    assert rotation(circle) == (45, 150, 100)
    assert circle.get("fill") == "#0000ff" and circle.get("fill-opacity") == "0.502"
    assert rotation(by_oid(root, 2)) == (45, 200, 150)  # relative rotate: 30 + 15
    assert rotation(by_oid(root, 3)) == (90, 300, 100)  # absolute angle
    line = by_oid(root, 0)
    assert line.get("stroke") == "#123456" and line.get("x2") == "50"  # a line's colour update
    assert root.find(NS + "rect").get("fill") == "#000000"  # bgcolor


def test_rotated_line_turns_about_its_midpoint():
    _, c = state([[0, "canvas", 100, 100, "#ffffffff", "#000000ff"],
                  [0, "obj", 0, ["line", 10, 50, 90, 50, "#000000ff"]],
                  [0, "update", 0, "rotate", 90]])
    assert rotation(by_oid(svg_of(c), 0)) == (90, 50, 50)


def test_fill_polygon_is_drawn_beneath_its_lines():
    _, c = state([[0, "canvas", 100, 100, "#ffffffff", "#000000ff"],
                  [0, "begin-fill", "#00ff0080"],
                  [0, "obj", 0, ["line", 10, 10, 90, 10, "#000000ff"]],
                  [0, "obj", 1, ["line", 90, 10, 50, 90, "#000000ff"]],
                  [0, "obj", 2, ["line", 50, 90, 10, 10, "#000000ff"]],
                  [0, "end-fill"]])
    root = svg_of(c)
    group = root.find(NS + "g")
    children = list(group)
    assert children[0].get("class") == "fill"
    assert points(children[0]) == [(10, 10), (90, 10), (50, 90)]
    assert children[0].get("fill") == "#00ff00" and children[0].get("stroke") == "none"
    assert [e.get("data-oid") for e in children[1:]] == ["0", "1", "2"]


def test_fgcolor_is_kept_on_the_svg():
    _, c = state([[0, "canvas", 10, 10, "#ffffffff", "#000000ff"], [0, "fgcolor", "#ff0000ff"]])
    assert svg_of(c).get("data-fgcolor") == "#ff0000ff"


def test_float_coordinates_are_compact():
    _, c = state([[0, "canvas", 100, 100, "#ffffffff", "#000000ff"],
                  [0, "obj", 0, ["circle", 1 / 3, 2.5, 10.0, "#000000ff", "#ffffff00", 0]]])
    el = by_oid(svg_of(c), 0)
    assert (el.get("cx"), el.get("cy"), el.get("r")) == ("0.333", "2.5", "10")


# -- PNG --------------------------------------------------------------------------------------

Image = pytest.importorskip("PIL.Image")


def png_image(canvas):
    data = png_render.render_png(canvas)
    assert data is not None and data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data)).convert("RGBA")


def close(pixel, expected, tol=8):
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected))


def test_png_pixels_match_the_geometry():
    _, c = state(SHAPES + [[0, "bgcolor", "#202020ff"]])
    img = png_image(c)
    assert img.size == (400, 300)
    assert close(img.getpixel((100, 100)), (255, 0, 0, 255))      # circle fill at its centre
    assert close(img.getpixel((100, 140)), (0, 0, 255, 255), 80)   # its blue border at r=40
    assert close(img.getpixel((5, 290)), (32, 32, 32, 255))        # bgcolor
    # the rect (80×40 at 200,150) is rotated 30° clockwise: a point along its rotated long
    # axis is inside, the unrotated corner region is not
    a = math.radians(30)
    inside = (round(200 + 35 * math.cos(a)), round(150 + 35 * math.sin(a)))
    half_yellow = (round(255 * 0.5 + 32 * 0.5), round(255 * 0.5 + 32 * 0.5), 16, 255)
    assert close(img.getpixel(inside), half_yellow, 12)
    assert close(img.getpixel((164, 168)), (32, 32, 32, 255))


def test_png_is_none_without_pillow(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL here")
        return real_import(name, *args, **kwargs)

    _, c = state(SHAPES)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    assert png_render.render_png(c) is None
    assert png_render.available() is False


def test_png_base64_roundtrip_is_decodable():
    _, c = state(SHAPES)
    data = png_render.render_png(c)
    assert Image.open(io.BytesIO(base64.b64decode(base64.b64encode(data)))).size == (400, 300)
