"""The remote-side producer: the original API, the reference's bytes, emission through IPython,
and a real kernel's display output translated by the bridge's translator."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from remote_kernel.drawing import producer
from remote_kernel.drawing.codec import decode_payload
from remote_kernel.drawing.jupyter import translate_drawing
from remote_kernel.drawing.producer import Canvas, Color, Colors, Vec2D
from remote_kernel.protocol import MIME_DRAWING_JSON, MIME_SORNA_DRAWING

EXAMPLE_B64 = ("k5YApmNhbnZhc8zIZKkjZmZmZmZmZmapIzAwMDAwMGZmlACjb2JqAJakbGluZQoKzL5aqSMwMDAwMDBmZpQAo29i"
               "agGXpmNpcmNsZTIyFKkjMDAwMDAwZmapI2ZmMDAwMGZmAA==")
EXAMPLE_2 = [[0, "begin-group"], [0, "update", 1, "x", 150], [0, "update", 1, "rotate", 45],
             [0, "end-group"], [0, "update", 1, "fill", "#0000ff80"]]


@pytest.fixture(autouse=True)
def fresh_canvas_ids(monkeypatch):
    # canvas ids count per remote process; each test starts as a fresh process would
    monkeypatch.setattr(producer, "_next_canvas_id", 0)


def test_reference_example_bytes_are_reproduced_exactly():
    c = Canvas(200, 100)
    c.line(10, 10, 190, 90)
    ci = c.circle(50, 50, 20, fill=Colors.Red)
    assert c.flush() == EXAMPLE_B64
    c.begin_group()
    ci.set_x(150)
    ci.rotate(45)
    c.end_group()
    ci.fill(Color(0, 0, 255, 128))
    assert decode_payload(c.flush()) == EXAMPLE_2
    assert c.flush() == "kA=="  # nothing recorded since: an empty list


def test_colors():
    assert Colors.Transparent.to_hex() == "#ffffff00"
    assert [getattr(Colors, n).to_hex() for n in ("Black", "Gray", "White", "Red", "Green", "Blue",
                                                   "Yellow", "Magenta", "Cyan")] == [
        "#000000ff", "#808080ff", "#ffffffff", "#ff0000ff", "#00ff00ff", "#0000ffff",
        "#ffff00ff", "#ff00ffff", "#00ffffff"]
    assert Color.from_rgba([1, 2, 3, 4]).to_hex() == "#01020304"
    assert Color.from_hex("#0a0b0c") == Color(10, 11, 12, 255)
    with pytest.raises(ValueError, match="0..255"):
        Color(256, 0, 0)


def test_every_call_records_the_documented_command():
    c = Canvas(300, 200, bgcolor=Colors.Black, fgcolor=Colors.White)
    ln = c.line(1, 2, 3, 4)
    ci = c.circle(5, 6, 7, border=Colors.Red, fill=Colors.Blue, angle=8)
    r = c.rectangle(9, 10, 11, 12)
    t = c.triangle(13, 14, 15, 16, fill=Colors.Green, angle=17)
    c.stop_animation(); c.resume_animation()
    c.background_color(Colors.Gray); c.stroke_color(Colors.Yellow)
    c.begin_fill(Colors.Cyan); c.end_fill()
    ln.set_x1(1); ln.set_y1(2); ln.set_x2(3); ln.set_y2(4); ln.stroke(Colors.Red)
    ln.set_x(99); ln.set_radius(5); ln.fill(Colors.Red)  # not lines: ignored, as in the original
    ci.set_radius(3); ci.stroke(Colors.Black); ci.fill(Colors.White)
    r.set_x(1); r.set_y(2); r.rotate(10); r.set_angle(20); r.set_radius(4)
    t.stroke(Colors.Magenta)
    cmds = decode_payload(c.flush())
    assert cmds == [
        [0, "canvas", 300, 200, "#000000ff", "#ffffffff"],
        [0, "obj", 0, ["line", 1, 2, 3, 4, "#ffffffff"]],
        [0, "obj", 1, ["circle", 5, 6, 7, "#ff0000ff", "#0000ffff", 8]],
        [0, "obj", 2, ["rect", 9, 10, 11, 12, "#ffffffff", "#ffffff00", 0]],
        [0, "obj", 3, ["triangle", 13, 14, 15, 16, "#ffffffff", "#00ff00ff", 17]],
        [0, "stop-anim"], [0, "resume-anim"],
        [0, "bgcolor", "#808080ff"], [0, "fgcolor", "#ffff00ff"],
        [0, "begin-fill", "#00ffffff"], [0, "end-fill"],
        [0, "update", 0, "x1", 1], [0, "update", 0, "y1", 2], [0, "update", 0, "x2", 3],
        [0, "update", 0, "y2", 4], [0, "update", 0, "color", "#ff0000ff"],
        [0, "update", 1, "radius", 3], [0, "update", 1, "border", "#000000ff"],
        [0, "update", 1, "fill", "#ffffffff"],
        [0, "update", 2, "x", 1], [0, "update", 2, "y", 2], [0, "update", 2, "rotate", 10],
        [0, "update", 2, "angle", 20],
        [0, "update", 3, "border", "#ff00ffff"],
    ]
    # after stroke_color, the default colour of new shapes follows
    c.line(0, 0, 1, 1)
    assert decode_payload(c.flush())[0][3][5] == "#ffff00ff"
    # canvas ids count up per process
    assert Canvas(1, 1)._id == 1


def test_turtle_moves_draw_grouped_lines_and_move_the_cursor():
    c = Canvas(200, 100)
    t = c.create_turtle()
    t.forward(50)           # heading east
    t.right(90)             # now south (y down)
    t.forward(20)
    t.penup()
    t.left(90)
    t.forward(10)           # no line with the pen up
    t.pendown()
    t.setpos(0, 0)
    assert t.pos() == Vec2D(0, 0)
    cmds = decode_payload(c.flush())
    assert cmds[1] == [0, "obj", 0, ["triangle", 100.0, 50.0, 12, 18, "#ff0000ff", "#ffc8c8ff", 90]]
    assert cmds[2:7] == [[0, "begin-group"], [0, "obj", 1, ["line", 100.0, 50.0, 150.0, 50.0, "#ff000080"]],
                         [0, "update", 0, "x", 150.0], [0, "update", 0, "y", 50.0], [0, "end-group"]]
    assert cmds[7] == [0, "update", 0, "rotate", 90]
    line2 = cmds[9][3]
    assert line2[:3] == ["line", 150.0, 50.0] and line2[3] == pytest.approx(150) and line2[4] == pytest.approx(70)
    assert cmds[13] == [0, "update", 0, "rotate", -90]
    assert [x[1] for x in cmds[14:18]] == ["begin-group", "update", "update", "end-group"]  # pen up
    assert cmds[19][3][3:5] == [100.0, 50.0]  # setpos is relative to the centre
    assert len(cmds) == 23


def test_vec2d():
    v = Vec2D(3, 4)
    assert abs(v) == 5 and v + Vec2D(1, 1) == (4, 5) and v - Vec2D(1, 1) == (2, 3)
    assert v * 2 == (6, 8) and 2 * v == (6, 8) and v * Vec2D(1, 1) == 7 and -v == (-3, -4)
    r = Vec2D(1, 0).rotate(90)
    assert r[0] == pytest.approx(0) and r[1] == pytest.approx(1)
    assert repr(v) == "(3.00,4.00)"


def test_update_displays_through_ipython_raw():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    c = Canvas(200, 100)
    c.line(10, 10, 190, 90)
    c.circle(50, 50, 20, fill=Colors.Red)
    with capture_output() as captured:
        c.update()
        c.show()  # nothing new: nothing emitted
    [out] = captured.outputs
    assert out.data == {MIME_SORNA_DRAWING: EXAMPLE_B64}


def test_producer_imports_without_ipython_and_fails_only_at_update():
    code = textwrap.dedent("""
        import sys
        sys.modules["IPython"] = None  # make `import IPython` fail
        from remote_kernel.drawing.producer import Canvas, Colors
        c = Canvas(10, 10)
        c.circle(1, 1, 1)
        try:
            c.update()
        except RuntimeError as exc:
            print("ERR", exc)
        print("PAYLOAD", c.flush())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ERR Canvas.update() needs IPython" in out.stdout
    payload = out.stdout.split("PAYLOAD ")[1].strip()
    assert [c[1] for c in decode_payload(payload)] == ["canvas", "obj"]  # kept for flush()


def test_real_kernel_display_is_translated(tmp_path):
    """Producer code on a real ipykernel: its display_data is what the bridge translates."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        code = textwrap.dedent("""
            from remote_kernel.drawing.producer import Canvas, Colors, Color
            c = Canvas(200, 100)
            c.line(10, 10, 190, 90)
            ci = c.circle(50, 50, 20, fill=Colors.Red)
            c.update()
            ci.set_x(150)
            c.update()
        """)
        outputs = []
        kc.execute_interactive(code, timeout=60, output_hook=outputs.append)
        displays = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
        assert [list(d) for d in displays] == [[MIME_SORNA_DRAWING], [MIME_SORNA_DRAWING]]
        assert displays[0][MIME_SORNA_DRAWING] == EXAMPLE_B64
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    class Ctx:
        session: dict = {}
        cell: dict = {}

    ctx = Ctx()
    msgs = [m for d in displays for m in translate_drawing(d[MIME_SORNA_DRAWING], ctx)]
    assert [m[0] for m in msgs] == ["display_data", "update_display_data"]
    bundle = msgs[1][1]["data"][MIME_DRAWING_JSON]
    assert bundle["newFrom"] == 3 and bundle["commands"][3] == [0, "update", 1, "x", 150]
    assert json.loads(json.dumps(bundle)) == bundle
