"""Render a canvas's final state to SVG text (pure).

Geometry follows the original renderer: y down, every shape positioned by its centre, angles in
degrees clockwise (SVG's `rotate()` in a y-down frame is clockwise too), stroke width 2.
Colours are written as `#rrggbb` plus a separate opacity because `#rrggbbaa` is not SVG 1.1
and some consumers (nbconvert's PDF path, older viewers) ignore it. No element ids: the SVG is
inlined into HTML pages where ids would collide across outputs; `data-oid` names objects.
"""

from __future__ import annotations

from remote_kernel.drawing.canvas import CanvasState

STROKE_WIDTH = 2


def num(v: float) -> str:
    """Compact, stable number text: ints as is, floats to 3 decimals without trailing zeros."""
    if isinstance(v, int):
        return str(v)
    text = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def paint(attr: str, color: str) -> str:
    """`fill="#rrggbb" fill-opacity=".."` from `#rrggbbaa`; fully transparent → none."""
    alpha = int(color[7:9], 16)
    if alpha == 0:
        return f'{attr}="none"'
    if alpha == 255:
        return f'{attr}="{color[:7]}"'
    return f'{attr}="{color[:7]}" {attr}-opacity="{num(round(alpha / 255, 3))}"'


def _rotation(angle: float, cx: float, cy: float) -> str:
    if not angle:
        return ""
    return f' transform="rotate({num(angle)} {num(cx)} {num(cy)})"'


def triangle_points(x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    """Isosceles, apex up, inside the w×h box centred on (x, y)."""
    return [(x, y - h / 2), (x + w / 2, y + h / 2), (x - w / 2, y + h / 2)]


def _points(points) -> str:
    return " ".join(f"{num(px)},{num(py)}" for px, py in points)


def render_object(oid: int | None, obj: dict) -> str:
    kind = obj["kind"]
    tag = f' data-oid="{oid}"' if oid is not None else ""
    if kind == "line":
        x1, y1, x2, y2 = obj["x1"], obj["y1"], obj["x2"], obj["y2"]
        rot = _rotation(obj["angle"], (x1 + x2) / 2, (y1 + y2) / 2)
        return (f'<line{tag} x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" '
                f'{paint("stroke", obj["color"])}{rot}/>')
    style = f'{paint("stroke", obj["border"])} {paint("fill", obj["fill"])}'
    x, y, rot = obj["x"], obj["y"], _rotation(obj["angle"], obj["x"], obj["y"])
    if kind == "circle":
        return f'<circle{tag} cx="{num(x)}" cy="{num(y)}" r="{num(abs(obj["radius"]))}" {style}{rot}/>'
    w, h = abs(obj["width"]), abs(obj["height"])
    if kind == "rect":
        return (f'<rect{tag} x="{num(x - w / 2)}" y="{num(y - h / 2)}" width="{num(w)}" '
                f'height="{num(h)}" {style}{rot}/>')
    return f'<polygon{tag} data-shape="triangle" points="{_points(triangle_points(x, y, w, h))}" {style}{rot}/>'


def render_svg(state: CanvasState) -> str:
    w, h = num(state.width), num(state.height)
    oid_of = {id(obj): oid for oid, obj in state.objects.items()}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'data-canvas="{state.cid}" data-fgcolor="{state.fgcolor}">',
        f'<rect class="background" x="0" y="0" width="{w}" height="{h}" {paint("fill", state.bgcolor)}/>',
        f'<g stroke-width="{STROKE_WIDTH}" stroke-linejoin="round">',
    ]
    for item in state.visible_items():
        if item["kind"] == "fill":
            points = state.fill_points(item)
            if len(points) >= 3:
                parts.append(f'<polygon class="fill" points="{_points(points)}" '
                             f'stroke="none" {paint("fill", item["color"])}/>')
        else:
            parts.append(render_object(oid_of.get(id(item)), item))
    parts.append("</g></svg>")
    return "\n".join(parts)
