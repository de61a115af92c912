"""notebooks/drawing.ipynb: its code run on a real Python kernel (what the embedded server's
remote kernels are), its drawing records translated as the bridge does, rendered, and exported
to HTML with the SVG fallback."""

from __future__ import annotations

import base64
import copy
import io
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from remote_kernel.drawing.jupyter import translate_drawing
from remote_kernel.protocol import MIME_DRAWING_JSON, MIME_SORNA_DRAWING

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "drawing.ipynb"


class Ctx:
    def __init__(self):
        self.session, self.cell = {}, {}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook executed on plain ipykernel; outputs hold the raw sorna records."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(copy.deepcopy(nb), kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    return client.execute()


def bridge_outputs(nb):
    """Replace every sorna record by what the bridge kernel's translator makes of it: one
    session for the notebook, a fresh cell context per cell, updates merged into their display."""
    ctx = Ctx()
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        ctx.cell = {}
        outputs, by_display = [], {}
        for out in cell.outputs:
            if out.output_type == "display_data" and MIME_SORNA_DRAWING in out.data:
                for msg_type, content in translate_drawing(out.data[MIME_SORNA_DRAWING], ctx):
                    did = content["transient"].get("display_id")
                    new = nbformat.v4.new_output("display_data", data=content["data"],
                                                 metadata=content["metadata"])
                    if msg_type == "update_display_data":
                        outputs[by_display[did]] = new
                    else:
                        by_display[did] = len(outputs)
                        outputs.append(new)
            else:
                outputs.append(out)
        cell.outputs = outputs
    return nb


def test_notebook_metadata_targets_the_bridge_kernel():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec == {"name": "remote-python", "display_name": "Python (remote)",
                                      "language": "python"}


def test_every_drawing_cell_renders_and_the_red_circle_is_where_the_browser_test_looks(executed):
    nb = bridge_outputs(executed)
    drawings = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code"
                for o in c.outputs if o.output_type == "display_data"]
    texts = [o.data["text/plain"] for _, o in drawings]
    assert not [t for t in texts if t.startswith("drawing error")], texts
    # shapes, updated-in-cell shapes, spiral, later-cell update: one output each
    assert len(drawings) == 4, texts
    assert texts[0] == texts[1] == texts[3] == "<drawing canvas 0: 400×300, 7 objects>"
    assert texts[2] == "<drawing canvas 1: 400×300, 41 objects>"
    later = drawings[3][1].data[MIME_DRAWING_JSON]
    assert 0 < later["newFrom"] < len(later["commands"])  # animates only the new commands

    from PIL import Image
    for _, out in (drawings[0], drawings[3]):
        img = Image.open(io.BytesIO(base64.b64decode(out.data["image/png"]))).convert("RGB")
        r, g, b = img.getpixel((100, 100))
        assert r > 240 and g < 15 and b < 15, (r, g, b)


def test_html_export_shows_the_svg_fallback(executed):
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(bridge_outputs(executed))
    # nbconvert prefers SVG to PNG and embeds it as a data: image
    svgs = [base64.b64decode(m).decode("utf-8") for m in
            re.findall(r'data-mime-type="image/svg\+xml"[^>]*>\s*<img[^>]* src="data:image/svg\+xml;base64,([^"]+)"', html)]
    assert len(svgs) == 4
    assert 'data-mime-type="image/png"' not in html
    assert all(s.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="400"') for s in svgs)
    assert 'cx="100" cy="100" r="40"' in svgs[0]
