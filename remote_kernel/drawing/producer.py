"""The remote-side drawing API: what user code imports on a remote Python kernel.

Same API and same wire bytes as the Backend.AI kernel runner's drawing module: commands are
recorded per canvas and `update()` (alias `show()`) emits those recorded since the previous
update as `base64(msgpack(commands))` in an IPython display of type
`application/x-sorna-drawing` — exactly the media record a real Backend.AI kernel sends.

Self-contained on purpose (stdlib + msgpack; IPython only when emitting) so it can be copied
to any remote kernel. `Canvas.flush()` returns the payload without displaying it.
"""

from __future__ import annotations

import base64
import math

import msgpack

MIME_TYPE = "application/x-sorna-drawing"

_next_canvas_id = 0  # canvas ids are counted per remote process, as in the original


class Color:
    """An RGBA colour, channels 0..255."""

    __slots__ = ("red", "green", "blue", "alpha")

    def __init__(self, red: int, green: int, blue: int, alpha: int = 255):
        self.red, self.green, self.blue, self.alpha = (int(red), int(green), int(blue), int(alpha))
        for v in (self.red, self.green, self.blue, self.alpha):
            if not 0 <= v <= 255:
                raise ValueError(f"colour channels must be within 0..255, got {v}")

    @classmethod
    def from_rgba(cls, rgba) -> "Color":
        return cls(*rgba)

    @classmethod
    def from_hex(cls, value: str) -> "Color":
        text = value.lstrip("#")
        if len(text) not in (6, 8):
            raise ValueError(f"expected '#rrggbb' or '#rrggbbaa', got {value!r}")
        channels = [int(text[i:i + 2], 16) for i in range(0, len(text), 2)]
        return cls(*channels)

    def to_hex(self) -> str:
        return f"#{self.red:02x}{self.green:02x}{self.blue:02x}{self.alpha:02x}"

    def to_rgba(self) -> tuple[int, int, int, int]:
        return (self.red, self.green, self.blue, self.alpha)

    def __eq__(self, other) -> bool:
        return isinstance(other, Color) and self.to_rgba() == other.to_rgba()

    def __hash__(self) -> int:
        return hash(self.to_rgba())

    def __repr__(self) -> str:
        return f"Color({self.red}, {self.green}, {self.blue}, {self.alpha})"


class Colors:
    Transparent = Color(255, 255, 255, 0)
    Black = Color(0, 0, 0)
    Gray = Color(128, 128, 128)
    White = Color(255, 255, 255)
    Red = Color(255, 0, 0)
    Green = Color(0, 255, 0)
    Blue = Color(0, 0, 255)
    Yellow = Color(255, 255, 0)
    Magenta = Color(255, 0, 255)
    Cyan = Color(0, 255, 255)


def encode_commands(commands: list) -> str:
    return base64.b64encode(msgpack.packb(commands, use_bin_type=True)).decode("ascii")


def _emit(payload: str) -> None:
    try:
        from IPython.display import display
    except ImportError:
        raise RuntimeError("Canvas.update() needs IPython to display the drawing; "
                           "use Canvas.flush() to get the payload instead") from None
    display({MIME_TYPE: payload}, raw=True)


class DrawingObject:
    """A shape on a canvas; setters record `update` commands (ignored where the shape lacks
    the property, as in the original)."""

    def __init__(self, canvas: "Canvas", oid: int, kind: str):
        self._canvas, self._id, self._type = canvas, oid, kind

    def _update(self, prop: str, value, kinds=None) -> None:
        if kinds is None or self._type in kinds:
            self._canvas._record((self._canvas._id, "update", self._id, prop, value))

    def set_x(self, x):
        self._update("x", x, ("rect", "circle", "triangle"))

    def set_y(self, y):
        self._update("y", y, ("rect", "circle", "triangle"))

    def set_x1(self, x):
        self._update("x1", x, ("line",))

    def set_y1(self, y):
        self._update("y1", y, ("line",))

    def set_x2(self, x):
        self._update("x2", x, ("line",))

    def set_y2(self, y):
        self._update("y2", y, ("line",))

    def set_radius(self, r):
        self._update("radius", r, ("circle",))

    def rotate(self, a):
        """Turn by `a` degrees clockwise, relative to the current angle."""
        self._update("rotate", a)

    def set_angle(self, a):
        self._update("angle", a)

    def stroke(self, color: Color):
        self._update("color" if self._type == "line" else "border", color.to_hex())

    def fill(self, color: Color):
        self._update("fill", color.to_hex(), ("rect", "circle", "triangle"))


class Canvas:
    def __init__(self, width, height, bgcolor: Color = Colors.White, fgcolor: Color = Colors.Black):
        global _next_canvas_id
        self._id = _next_canvas_id
        _next_canvas_id += 1
        self._cmd_history: list = []
        self._next_objid = 0
        self.width, self.height = width, height
        self.bgcolor, self.fgcolor = bgcolor, fgcolor
        self._record((self._id, "canvas", width, height, bgcolor.to_hex(), fgcolor.to_hex()))

    def _record(self, cmd: tuple) -> None:
        self._cmd_history.append(cmd)

    # -- emitting --------------------------------------------------------------------------
    def flush(self) -> str:
        """The payload of the commands recorded since the last update; starts a new batch."""
        payload = encode_commands(self._cmd_history)
        self._cmd_history = []
        return payload

    def update(self) -> None:
        if not self._cmd_history:
            return  # nothing new: an empty payload would only be noise
        _emit(encode_commands(self._cmd_history))
        self._cmd_history = []  # only once emitted: a failed update loses nothing

    show = update

    # -- canvas-wide commands -------------------------------------------------------------
    def create_turtle(self) -> "Turtle":
        return Turtle(self)

    def stop_animation(self):
        self._record((self._id, "stop-anim"))

    def resume_animation(self):
        self._record((self._id, "resume-anim"))

    def begin_group(self):
        self._record((self._id, "begin-group"))

    def end_group(self):
        self._record((self._id, "end-group"))

    def begin_fill(self, c: Color):
        self._record((self._id, "begin-fill", c.to_hex()))

    def end_fill(self):
        self._record((self._id, "end-fill"))

    def background_color(self, c: Color):
        self.bgcolor = c
        self._record((self._id, "bgcolor", c.to_hex()))

    def stroke_color(self, c: Color):
        self.fgcolor = c
        self._record((self._id, "fgcolor", c.to_hex()))

    # -- shapes ---------------------------------------------------------------------------
    def _add(self, args: tuple) -> DrawingObject:
        oid = self._next_objid
        self._next_objid += 1
        self._record((self._id, "obj", oid, args))
        return DrawingObject(self, oid, args[0])

    def line(self, x0, y0, x1, y1, color: Color | None = None) -> DrawingObject:
        color = self.fgcolor if color is None else color
        return self._add(("line", x0, y0, x1, y1, color.to_hex()))

    def circle(self, x, y, radius, border: Color | None = None, fill: Color | None = None,
               angle=0) -> DrawingObject:
        """Centred on (x, y)."""
        border = self.fgcolor if border is None else border
        fill = Colors.Transparent if fill is None else fill
        return self._add(("circle", x, y, radius, border.to_hex(), fill.to_hex(), angle))

    def rectangle(self, left, top, width, height, border: Color | None = None,
                  fill: Color | None = None, angle=0) -> DrawingObject:
        """Centred on (left, top), despite the names (the original's semantics)."""
        border = self.fgcolor if border is None else border
        fill = Colors.Transparent if fill is None else fill
        return self._add(("rect", left, top, width, height, border.to_hex(), fill.to_hex(), angle))

    def triangle(self, left, top, width, height, border: Color | None = None,
                 fill: Color | None = None, angle=0) -> DrawingObject:
        """Isosceles, apex up, centred on (left, top)."""
        border = self.fgcolor if border is None else border
        fill = Colors.Transparent if fill is None else fill
        return self._add(("triangle", left, top, width, height, border.to_hex(), fill.to_hex(),
                          angle))


class Vec2D(tuple):
    """A 2-D vector (as in the stdlib turtle module)."""

    def __new__(cls, x, y):
        return tuple.__new__(cls, (x, y))

    def __add__(self, other):
        return Vec2D(self[0] + other[0], self[1] + other[1])

    def __sub__(self, other):
        return Vec2D(self[0] - other[0], self[1] - other[1])

    def __mul__(self, other):
        if isinstance(other, Vec2D):  # dot product
            return self[0] * other[0] + self[1] * other[1]
        return Vec2D(self[0] * other, self[1] * other)

    def __rmul__(self, other):
        if isinstance(other, (int, float)):
            return Vec2D(self[0] * other, self[1] * other)
        return NotImplemented

    def __neg__(self):
        return Vec2D(-self[0], -self[1])

    def __abs__(self):
        return math.hypot(self[0], self[1])

    def rotate(self, angle):
        """Rotated counter-clockwise by `angle` degrees."""
        a = math.radians(angle)
        c, s = math.cos(a), math.sin(a)
        return Vec2D(self[0] * c - self[1] * s, self[0] * s + self[1] * c)

    def __getnewargs__(self):
        return (self[0], self[1])

    def __repr__(self):
        return "(%.2f,%.2f)" % self


_TRAIL = Color(255, 0, 0, 128)


class Turtle:
    """A cursor that draws lines. Heading in degrees clockwise from north, starting east;
    positions relative to the canvas centre, y down."""

    def __init__(self, canvas: Canvas):
        self.canvas = canvas
        self.pen = True
        cx, cy = canvas.width / 2, canvas.height / 2
        self.cursor = canvas.triangle(cx, cy, 12, 18, border=Colors.Red,
                                      fill=Color(255, 200, 200, 255), angle=90)
        self.angle = 90
        self.points = [(cx, cy)]

    def _move_to(self, x, y):
        px, py = self.points[-1]
        self.canvas.begin_group()
        if self.pen:
            self.canvas.line(px, py, x, y, color=_TRAIL)
        self.cursor.set_x(x)
        self.cursor.set_y(y)
        self.canvas.end_group()
        self.points.append((x, y))

    def forward(self, amt):
        x, y = self.points[-1]
        rad = math.radians(self.angle)
        self._move_to(x + math.sin(rad) * amt, y - math.cos(rad) * amt)

    def left(self, deg):
        self.cursor.rotate(-deg)
        self.angle -= deg

    def right(self, deg):
        self.cursor.rotate(deg)
        self.angle += deg

    def pos(self) -> Vec2D:
        (bx, by), (x, y) = self.points[0], self.points[-1]
        return Vec2D(x - bx, y - by)

    def penup(self):
        self.pen = False

    def pendown(self):
        self.pen = True

    def setpos(self, x, y=None):
        if y is None:
            x, y = x[0], x[1]
        bx, by = self.points[0]
        self._move_to(x + bx, y + by)


__all__ = ["Canvas", "Color", "Colors", "DrawingObject", "Turtle", "Vec2D"]
