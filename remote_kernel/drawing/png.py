"""Render a canvas's final state to PNG bytes with Pillow, or None when Pillow is missing.

Same geometry as svg.py. Drawn at 2× and downscaled for anti-aliasing; the image is opaque
(a translucent background is flattened onto white) so it looks the same on any page.
"""

from __future__ import annotations

import io
import math

from remote_kernel.drawing.canvas import CanvasState
from remote_kernel.drawing.svg import STROKE_WIDTH, triangle_points

SCALE = 2
MAX_PIXELS = 4096 * 4096  # beyond this a PNG is not worth the memory: skip it


def available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def _rgba(color: str) -> tuple[int, int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16), int(color[7:9], 16))


def _rotate(points, angle: float, cx: float, cy: float):
    if not angle:
        return points
    a = math.radians(angle)  # clockwise on a y-down canvas
    c, s = math.cos(a), math.sin(a)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def render_png(state: CanvasState) -> bytes | None:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    width, height = max(1, round(state.width)), max(1, round(state.height))
    if width * height > MAX_PIXELS:
        return None
    k = SCALE
    r, g, b, a = _rgba(state.bgcolor)
    blend = a / 255  # flatten the background onto white
    bg = tuple(round(c * blend + 255 * (1 - blend)) for c in (r, g, b))
    img = Image.new("RGB", (width * k, height * k), bg)
    draw = ImageDraw.Draw(img, "RGBA")  # RGBA drawing on RGB blends by alpha
    sw = STROKE_WIDTH * k

    def scaled(points):
        return [(x * k, y * k) for x, y in points]

    for item in state.visible_items():
        kind = item["kind"]
        if kind == "fill":
            points = state.fill_points(item)
            if len(points) >= 3:
                draw.polygon(scaled(points), fill=_rgba(item["color"]))
        elif kind == "line":
            x1, y1, x2, y2 = item["x1"], item["y1"], item["x2"], item["y2"]
            pts = _rotate([(x1, y1), (x2, y2)], item["angle"], (x1 + x2) / 2, (y1 + y2) / 2)
            draw.line(scaled(pts), fill=_rgba(item["color"]), width=sw)
        elif kind == "circle":
            x, y, rad = item["x"] * k, item["y"] * k, abs(item["radius"]) * k
            half = sw / 2  # SVG strokes straddle the outline; Pillow draws inside the box
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=_rgba(item["fill"]))
            draw.ellipse([x - rad - half, y - rad - half, x + rad + half, y + rad + half],
                         outline=_rgba(item["border"]), width=sw)
        else:
            x, y, w, h = item["x"], item["y"], abs(item["width"]), abs(item["height"])
            if kind == "rect":
                pts = [(x - w / 2, y - h / 2), (x + w / 2, y - h / 2),
                       (x + w / 2, y + h / 2), (x - w / 2, y + h / 2)]
            else:
                pts = triangle_points(x, y, w, h)
            pts = scaled(_rotate(pts, item["angle"], x, y))
            draw.polygon(pts, fill=_rgba(item["fill"]))
            draw.line(pts + [pts[0]], fill=_rgba(item["border"]), width=sw, joint="curve")
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()
