"""The drawing notebook through the bridge on the embedded server, both modes: every drawing
arrives as our JSON bundle with SVG/PNG/text fallbacks, a later cell's update carries the whole
canvas, and `jupyter nbconvert --to html` of the executed notebook shows the SVG fallback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kernel_support as ks
from remote_kernel import protocol

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "drawing.ipynb"
KERNEL = "remote-drawing-e2e"


@pytest.fixture(scope="module", params=[True, False], ids=["jupyter-outputs", "classic"])
def env(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("drawing-specs")
    ks.write_kernelspec(root, name=KERNEL)
    with ks.start_server(extensions=request.param) as srv:
        full = dict(os.environ)
        full["JUPYTER_PATH"] = os.pathsep.join([str(root)] + [p for p in full.get("JUPYTER_PATH", "").split(os.pathsep) if p])
        full.update(ks.server_env(srv))
        yield full


def test_drawing_notebook_through_the_bridge(env, tmp_path):
    nb_path = tmp_path / "drawing.ipynb"
    shutil.copy(NOTEBOOK, nb_path)
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         f"--ExecutePreprocessor.kernel_name={KERNEL}", "--output", "executed.ipynb", str(nb_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    drawings = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if protocol.MIME_DRAWING_JSON in o.get("data", {})]
    assert len(drawings) >= 3, "every drawing cell should leave a drawing output"
    for output in drawings:
        data = output["data"]
        assert data["image/svg+xml"].lstrip().startswith("<svg")
        assert data["text/plain"].startswith("<drawing canvas")
        assert "image/png" in data
        bundle = data[protocol.MIME_DRAWING_JSON]
        assert bundle["commands"][0][1] == "canvas"
        assert 0 <= bundle["newFrom"] <= len(bundle["commands"])
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
              or "drawing error" in str(o.get("data", {}).get("text/plain", ""))]
    assert not errors, errors
    # a later cell that only updates an earlier canvas still shows the whole canvas
    last = drawings[-1]["data"][protocol.MIME_DRAWING_JSON]
    assert last["newFrom"] > 1

    html = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--stdout",
                           str(tmp_path / "executed.ipynb")], env=env, capture_output=True, text=True, timeout=120)
    assert html.returncode == 0, html.stderr[-2000:]
    # nbconvert renders SVG (its first choice among our fallbacks) inline or as an SVG data URI;
    # either way the picture shown is the SVG, not the PNG
    svg_shown = len(re.findall(r"<svg", html.stdout)) + html.stdout.count("data:image/svg+xml")
    assert svg_shown >= len(drawings)
    assert "src=\"data:image/png" not in html.stdout
