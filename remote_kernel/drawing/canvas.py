"""Canvas state: replay validated commands into objects, per remote session (pure).

The original renderer lost its objects between payloads, so a later `update()` of an earlier
shape broke. Here a `CanvasStore` lives as long as the remote session and keeps every canvas's
objects and its whole command list since the last `canvas` command.

Semantics the original renderer ignored, as implemented here (the browser renderer follows the
same rules):
- `bgcolor` repaints the canvas background; `fgcolor` changes the canvas's foreground colour
  (objects carry their own colours, so it only affects what is drawn *with* the foreground:
  nothing in the command set today, but it is kept and exported).
- `begin-fill C` ... `end-fill`: the lines created in between form a polygon (the first line's
  start, then every line's end; a line that does not start where the previous one ended adds its
  start too) filled with C, drawn beneath those lines. The polygon follows later updates of those
  lines. A fill shows only once `end-fill` arrived; a `begin-fill` while another is open closes it.
- A line's `color` update recolours the line; `rotate`/`angle` on a line turn it about its midpoint.
- An `obj` command reusing an existing object id replaces that object in place.

A payload is applied atomically: it is checked against the current state first, so a bad
command leaves every canvas as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from remote_kernel.drawing.codec import Command, DrawingError, SHAPE_LAYOUTS

# Which update properties each shape kind accepts.
_PROPS = {
    "line": frozenset({"x1", "y1", "x2", "y2", "color", "rotate", "angle"}),
    "circle": frozenset({"x", "y", "radius", "border", "fill", "rotate", "angle"}),
    "rect": frozenset({"x", "y", "border", "fill", "rotate", "angle"}),
    "triangle": frozenset({"x", "y", "border", "fill", "rotate", "angle"}),
}


def make_object(shape: list) -> dict:
    """A validated shape list → the object's property dict."""
    kind = shape[0]
    obj = dict(zip(SHAPE_LAYOUTS[kind], shape[1:]))
    obj["kind"] = kind
    obj.setdefault("angle", 0)
    return obj


@dataclass
class CanvasState:
    cid: int
    width: float
    height: float
    bgcolor: str
    fgcolor: str
    commands: list = field(default_factory=list)  # every command since the last `canvas`
    objects: dict = field(default_factory=dict)   # oid → object dict
    items: list = field(default_factory=list)     # z-order: object dicts and fill dicts
    open_fill: dict | None = None

    @property
    def object_count(self) -> int:
        return len(self.objects)

    def apply(self, cmd: Command) -> None:
        """Apply one command already checked against this state."""
        name = cmd[1]
        self.commands.append(cmd)
        if name == "obj":
            oid, obj = cmd[2], make_object(cmd[3])
            old = self.objects.get(oid)
            if old is not None:  # replace in place: keeps z-order and fill membership
                old.clear()
                old.update(obj)
                obj = old
            else:
                self.objects[oid] = obj
                self.items.append(obj)
            if self.open_fill is not None and obj["kind"] == "line":
                self.open_fill["lines"].append(oid)
        elif name == "update":
            obj, prop, value = self.objects[cmd[2]], cmd[3], cmd[4]
            if prop == "rotate":
                obj["angle"] = obj["angle"] + value
            else:
                obj[prop] = value
        elif name == "bgcolor":
            self.bgcolor = cmd[2]
        elif name == "fgcolor":
            self.fgcolor = cmd[2]
        elif name == "begin-fill":
            self._close_fill()
            self.open_fill = {"kind": "fill", "color": cmd[2], "lines": [], "closed": False}
            self.items.append(self.open_fill)
        elif name == "end-fill":
            self._close_fill()
        # groups and animation control only matter to the animated renderer

    def _close_fill(self) -> None:
        if self.open_fill is not None:
            self.open_fill["closed"] = True
            self.open_fill = None

    def fill_points(self, fill: dict) -> list[tuple[float, float]]:
        """The polygon of a fill, from the current coordinates of its lines."""
        points: list[tuple[float, float]] = []
        for oid in fill["lines"]:
            line = self.objects.get(oid)
            if line is None or line["kind"] != "line":
                continue  # replaced by another shape kind
            start, end = (line["x1"], line["y1"]), (line["x2"], line["y2"])
            if not points or points[-1] != start:
                points.append(start)
            points.append(end)
        if len(points) > 1 and points[0] == points[-1]:
            points.pop()
        return points

    def visible_items(self) -> Iterable[dict]:
        """Items to draw, bottom to top: objects, and fills that are complete."""
        for item in self.items:
            if item["kind"] != "fill" or (item["closed"] and len(item["lines"]) > 0):
                yield item


@dataclass
class CanvasUpdate:
    """What one payload did to one canvas: the renderer animates commands[new_from:]."""

    canvas: CanvasState
    new_from: int


class CanvasStore:
    """Every canvas of one remote session, by canvas id."""

    def __init__(self) -> None:
        self.canvases: dict[int, CanvasState] = {}

    def apply(self, commands: list[Command]) -> list[CanvasUpdate]:
        """Apply a validated payload atomically; one CanvasUpdate per canvas it touched, in
        order of first appearance. Raises DrawingError (and changes nothing) if a command
        refers to a canvas or object that does not exist or sets a property its shape lacks."""
        self.check(commands)
        updates: dict[int, CanvasUpdate] = {}
        for cmd in commands:
            cid = cmd[0]
            if cmd[1] == "canvas":
                state = CanvasState(cid, cmd[2], cmd[3], cmd[4], cmd[5])
                self.canvases[cid] = state
                if cid in updates:
                    updates[cid].canvas, updates[cid].new_from = state, 0
                else:
                    updates[cid] = CanvasUpdate(state, 0)
            else:
                state = self.canvases[cid]
                if cid not in updates:
                    updates[cid] = CanvasUpdate(state, len(state.commands))
            state.apply(cmd)
        return list(updates.values())

    def check(self, commands: list[Command]) -> None:
        """Simulate object existence and kinds without touching the state."""
        # cid → (restarted in this payload, oid → kind created in this payload)
        overlay: dict[int, tuple[bool, dict[int, str]]] = {}
        for i, cmd in enumerate(commands):
            cid, name = cmd[0], cmd[1]
            if name == "canvas":
                overlay[cid] = (True, {})
                continue
            restarted, created = overlay.setdefault(cid, (False, {}))
            base = None if restarted else self.canvases.get(cid)
            if not restarted and base is None:
                raise DrawingError(f"command {i}: canvas {cid} does not exist "
                                   f"(no 'canvas' command for it in this session)")
            if name == "obj":
                created[cmd[2]] = cmd[3][0]
            elif name == "update":
                oid, prop = cmd[2], cmd[3]
                kind = created.get(oid)
                if kind is None and base is not None and oid in base.objects:
                    kind = base.objects[oid]["kind"]
                if kind is None:
                    raise DrawingError(f"command {i}: canvas {cid} has no object {oid} to update")
                if prop not in _PROPS[kind]:
                    raise DrawingError(f"command {i}: object {oid} is a {kind}, "
                                       f"which has no property '{prop}'")
