"""The drawing renderer in a real JupyterLab in headless Chromium.

The notebooks are written by the test with saved outputs built by the kernel's own translator
(remote_kernel.drawing.jupyter), so the bundle is exactly what the bridge kernel sends: the
drawing JSON plus the SVG (and PNG) fallbacks. The canvas must win over the fallbacks, and its
pixels must match the picture of the Python PNG renderer (same geometry as the SVG).
"""

from __future__ import annotations

import os
import time

import nbformat
import pytest
from nbformat.sign import NotebookNotary

from browser import (canvas_pixel, chromium, lab, lab_root, open_notebook, page,  # noqa: F401
                     run_first_cell, screenshot)
from remote_kernel.drawing.canvas import CanvasStore
from remote_kernel.drawing.codec import validate_commands
from remote_kernel.drawing.jupyter import build_bundle

# JupyterLab in Chromium, a minute in all: end to end, so not in the fast tier (-m 'not slow')
pytestmark = [pytest.mark.browser, pytest.mark.slow]

MIME = "application/vnd.remote-kernel.drawing+json"
RED, BLUE, GREEN = "#ff0000ff", "#0000ffff", "#00ff00ff"
BG = "#fff8dcff"  # cornsilk: proves bgcolor is honoured

# A 400×300 canvas: red filled circle at (100,100) r=40 plus shapes that exercise the
# semantics the renderer must share with the SVG fallback.
COMMANDS = [
    [0, "canvas", 400, 300, "#ffffffff", "#000000ff"],
    [0, "bgcolor", BG],
    [0, "obj", 0, ["circle", 100, 100, 40, "#000000ff", RED, 0]],
    # rect positioned by its centre, then moved by an update
    [0, "obj", 1, ["rect", 10, 10, 60, 40, "#000000ff", BLUE, 0]],
    [0, "update", 1, "x", 300],
    [0, "update", 1, "y", 80],
    # thin bar, angle 10 then rotate +20 (relative) → 30° clockwise
    [0, "obj", 2, ["rect", 200, 200, 100, 8, "#00000000", "#000000ff", 10]],
    [0, "update", 2, "rotate", 20],
    # apex-up triangle in its 80×60 box centred on (320,230)
    [0, "obj", 3, ["triangle", 320, 230, 80, 60, "#000000ff", GREEN, 0]],
    # begin-fill / end-fill: the polygon of the lines in between is filled (magenta)
    [0, "begin-fill", "#ff00ffff"],
    [0, "obj", 4, ["line", 20, 180, 120, 180, "#000000ff"]],
    [0, "obj", 5, ["line", 120, 180, 70, 280, "#000000ff"]],
    [0, "obj", 6, ["line", 70, 280, 20, 180, "#000000ff"]],
    [0, "end-fill"],
    [0, "begin-group"],
    [0, "update", 0, "radius", 40],
    [0, "update", 1, "fill", BLUE],
    [0, "end-group"],
]

# (x, y, what) away from edges; colours are taken from the Python PNG render
PROBES = [
    (100, 100, "circle centre"),
    (300, 80, "moved rect centre"),
    (234, 220, "bar, 30° clockwise"),
    (234, 180, "where a counter-clockwise bar would be"),
    (320, 240, "triangle"),
    (350, 203, "outside the apex-up triangle"),
    (70, 200, "fill polygon"),
    (200, 30, "background"),
]


def _bundle(new_from: int, emitted_at: int) -> tuple[dict, dict, bytes]:
    store = CanvasStore()
    (update,) = store.apply(validate_commands(COMMANDS))
    update.new_from = new_from
    data, metadata = build_bundle(update, now_ms=emitted_at)
    from remote_kernel.drawing.png import render_png
    return data, metadata, render_png(update.canvas)


def _write_notebook(root, name: str, new_from: int, emitted_at: int) -> bytes | None:
    data, metadata, png = _bundle(new_from, emitted_at)
    assert data[MIME]["commands"][0][1] == "canvas" and "image/svg+xml" in data
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("draw()", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)]
    nb.cells = [cell]
    # trusted, so the (unsafe) SVG renderer is a real competitor: rank decides, not trust
    NotebookNotary().sign(nb)
    nbformat.write(nb, str(root / name))
    return png


def _expected(png: bytes | None, x: float, y: float):
    if png is None:
        return None
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    sx, sy = img.width / 400, img.height / 300
    return img.getpixel((int(x * sx), int(y * sy)))


# Records every value data-animation takes on any canvas, from page load on.
WATCH_ANIMATION = """
window.__rkAnimation = [];
new MutationObserver(records => {
  for (const r of records) {
    if (r.attributeName === 'data-animation') window.__rkAnimation.push(r.target.dataset.animation);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-animation']});
"""


def _open_and_probe(page, lab, name, png):
    page.add_init_script(WATCH_ANIMATION)
    open_notebook(page, lab, name)
    output = page.locator(".jp-OutputArea-output").first
    canvas = output.locator("canvas[data-canvas-id]")
    canvas.wait_for(timeout=60_000)
    # the renderer, not a fallback
    assert output.locator(".jp-RenderedSVG, .jp-RenderedImage, svg").count() == 0
    assert canvas.get_attribute("data-canvas-id") == "0"
    assert canvas.get_attribute("data-commands") == str(len(COMMANDS))
    page.wait_for_selector("canvas[data-animation='done']", timeout=30_000)
    return canvas


def _check_pixels(canvas, png):
    for x, y, what in PROBES:
        got = canvas_pixel(canvas, x, y)
        assert got[3] == 255, (what, got)
        want = _expected(png, x, y)
        if want is not None:
            assert all(abs(a - b) <= 8 for a, b in zip(got[:3], want)), (what, got, want)
    assert canvas_pixel(canvas, 100, 100) == [255, 0, 0, 255]


def test_saved_drawing_renders_final_frame(page, lab, lab_root):
    png = _write_notebook(lab_root, "static.ipynb", new_from=3, emitted_at=1_600_000_000_000)
    canvas = _open_and_probe(page, lab, "static.ipynb", png)
    screenshot(page, "drawing-static")
    screenshot(page, "drawing-static-canvas", canvas)
    # a reopened notebook is drawn at once: the canvas never animated
    assert "running" not in page.evaluate("window.__rkAnimation")
    _check_pixels(canvas, png)


def test_fresh_drawing_animates_then_matches(page, lab, lab_root):
    new_from = 3  # canvas, bgcolor and the circle at once; the rest animates
    png = _write_notebook(lab_root, "fresh.ipynb", new_from=new_from,
                          emitted_at=int(time.time() * 1000))
    started = time.monotonic()
    canvas = _open_and_probe(page, lab, "fresh.ipynb", png)
    # (a bundle older than FRESH_MS = 30 s when shown is drawn at once: say so if that happened)
    assert "running" in page.evaluate("window.__rkAnimation"), (
        f"the new commands did not animate (shown {time.monotonic() - started:.0f} s after it was made)")
    screenshot(page, "drawing-fresh-done")
    _check_pixels(canvas, png)


# {gate!r}: the cell sends the update once the test has seen the first part drawn and is watching
UPDATE_CELL = f"""
import os
import time
from IPython.display import display
from remote_kernel.drawing.canvas import CanvasStore
from remote_kernel.drawing.codec import validate_commands
from remote_kernel.drawing.jupyter import build_bundle

COMMANDS = {COMMANDS!r}
store = CanvasStore()
(u,) = store.apply(validate_commands(COMMANDS[:3]))
data, md = build_bundle(u)
handle = display(data, metadata=md, raw=True, display_id=True)
deadline = time.monotonic() + 120
while not os.path.exists({{gate!r}}):
    assert time.monotonic() < deadline, "the test never opened the gate"
    time.sleep(0.02)
(u,) = store.apply(validate_commands(COMMANDS[3:]))
assert u.new_from == 3
data, md = build_bundle(u)
handle.update(data, metadata=md, raw=True)
"""

# Samples the circle's centre on every frame until the canvas is done again.
SAMPLE_CIRCLE = """
c => new Promise(resolve => {
  const seen = [];
  const ctx = c.getContext('2d');
  const s = c.width / parseFloat(c.style.width);
  const step = () => {
    seen.push(Array.from(ctx.getImageData(Math.floor(100 * s), Math.floor(100 * s), 1, 1).data).join(','));
    if (c.dataset.commands !== '3' && c.dataset.animation === 'done') resolve(seen);
    else requestAnimationFrame(step);
  };
  window.__rkSameCanvas = c;
  step();
})
"""


def test_update_display_data_animates_only_new_part(page, lab, lab_root):
    """A live ipykernel sends display_data then update_display_data for one display id: the
    same widget re-renders, the earlier part stays drawn, only the new commands animate."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    gate = lab_root / "update-gate"
    nb.cells = [nbformat.v4.new_code_cell(UPDATE_CELL.replace("{gate!r}", repr(str(gate))))]
    nbformat.write(nb, str(lab_root / "update.ipynb"))
    page.add_init_script(WATCH_ANIMATION)
    open_notebook(page, lab, "update.ipynb")
    run_first_cell(page)
    first = page.locator(".jp-OutputArea-output canvas[data-commands='3'][data-animation='done']")
    first.wait_for(timeout=120_000)
    before = page.evaluate("window.__rkAnimation.length")
    first.evaluate(f"c => {{ window.__rkSamples = ({SAMPLE_CIRCLE})(c); }}")  # watching from now on
    gate.touch()  # the cell sends its update
    samples = page.evaluate("window.__rkSamples")  # resolves once the update finished animating
    canvas = page.locator(".jp-OutputArea-output canvas[data-canvas-id]")
    assert canvas.count() == 1
    assert canvas.get_attribute("data-commands") == str(len(COMMANDS))
    assert canvas.evaluate("c => c === window.__rkSameCanvas"), "the widget was replaced"
    assert "running" in page.evaluate("window.__rkAnimation")[before:], "the update did not animate"
    assert samples and set(samples) == {"255,0,0,255"}, f"the earlier circle was redrawn: {set(samples)}"
    screenshot(page, "drawing-updated")
    _check_pixels(canvas, _bundle(3, 0)[2])


def test_drawing_notebook_through_bridge_kernel(chromium, server, tmp_path):
    """End to end: notebooks/drawing.ipynb run in the page on the bridge kernel, whose remote
    is the embedded server; every drawing is shown by the canvas renderer."""
    from pathlib import Path

    from browser import JupyterLab
    from kernel_support import server_env, write_kernelspec

    spec_root = tmp_path / "jupyter-path"
    write_kernelspec(spec_root, name="remote-python")  # the name the notebook asks for
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.read(Path(__file__).resolve().parent.parent / "notebooks" / "drawing.ipynb", 4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, str(root / "drawing.ipynb"))
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    jupyter_path = os.pathsep.join(filter(None, [str(spec_root), os.environ.get("JUPYTER_PATH")]))
    # kernels inherit the lab server's environment: that is how the bridge finds its remote
    env = {"JUPYTER_PATH": jupyter_path, **server_env(server)}
    with JupyterLab(root, env=env) as lab_server:
        page = chromium.new_page()
        try:
            page.add_init_script(WATCH_ANIMATION)
            open_notebook(page, lab_server, "drawing.ipynb")
            run_first_cell(page, timeout=180)
            for _ in range(len(nb.cells) - 2):  # Shift+Enter moves on: run the rest in turn
                page.keyboard.press("Shift+Enter")
            page.keyboard.press("Control+Enter")  # the last in place: adds no new cell
            page.wait_for_function(
                """n => {
                    const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
                        .map(e => e.textContent.trim());
                    return prompts.length === n && prompts.every(p => /^\\[\\d+\\]:$/.test(p));
                }""",
                arg=n_code, timeout=float(os.environ.get('RK_BRIDGE_TIMEOUT', 240)) * 1000)
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('canvas[data-canvas-id]'))"
                ".every(c => c.dataset.animation === 'done')", timeout=60_000)
            assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
            canvases = page.locator(".jp-OutputArea-output canvas[data-canvas-id]")
            ids = [canvases.nth(i).get_attribute("data-canvas-id") for i in range(canvases.count())]
            assert ids == ["0", "0", "1", "0"], ids
            assert page.locator(".jp-RenderedSVG, .jp-OutputArea-output .jp-RenderedImage").count() == 0
            assert "running" in page.evaluate("window.__rkAnimation")  # fresh outputs animate
            assert canvas_pixel(canvases.nth(0), 100, 100) == [255, 0, 0, 255]
        finally:
            screenshot(page, "drawing-notebook-bridge")  # also when it failed: shows where
            page.close()
            lab_server.shutdown_kernels()
