"""Widgets through the bridge, headless: one notebook (tqdm.auto, IntSlider, Output, interact,
Button, jslink, observe) run with nbclient ``store_widget_state=True`` on a direct ipykernel and
through the bridge stores the same widget models and states, and the same cell outputs.  A
server without our comms extension completes the same notebook with text views."""

from __future__ import annotations

import json
import os
import re

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import kernel_support as ks

pytestmark = pytest.mark.slow

ipywidgets = pytest.importorskip("ipywidgets")
pytest.importorskip("tqdm")

CELLS = [
    "from tqdm.auto import tqdm\nfor i in tqdm(range(5)):\n    pass",
    "import ipywidgets as w\ns = w.IntSlider(value=1)\ns.value = 5\ns",
    "out = w.Output()\nwith out:\n    print('captured')\nout",
    "@w.interact(x=3)\ndef f(x):\n    print('x is', x)",
    "b = w.Button(description='go')\nb.on_click(lambda _: print('clicked'))\nb",
    "a = w.IntSlider(); c = w.IntSlider()\nw.jslink((a, 'value'), (c, 'value'))\nw.VBox([a, c])",
    "s.observe(lambda change: print('new value', change['new']), 'value')\ns.value = 9",
]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

_MODEL_REF = re.compile(r"IPY_MODEL_[0-9a-f]+")
_TQDM_TIMES = re.compile(r"\[\d\d:\d\d[^\]\"]*\]")  # elapsed time and rate differ between any two runs


def run_notebook(kernel_name: str, env: dict | None = None):
    nb = new_notebook(cells=[new_code_cell(code) for code in CELLS])
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120, store_widget_state=True)
    client.execute(**({"env": env} if env is not None else {}))
    return nb


def canonical(value):
    """Ids and timings out: what is left must be equal between two runs of the notebook."""
    text = json.dumps(value, sort_keys=True)
    text = _MODEL_REF.sub("IPY_MODEL", text)
    text = re.sub(r'"model_id": "[0-9a-f]+"', '"model_id": "ID"', text)
    text = re.sub(r'"msg_id": "[^"]*"', '"msg_id": ""', text)
    return json.loads(_TQDM_TIMES.sub("[]", text))


def widget_models(nb) -> list[str]:
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return sorted(json.dumps(canonical(model), sort_keys=True) for model in state.values())


def models_named(nb, name: str) -> list[dict]:
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [model["state"] for model in state.values() if model["model_name"] == name]


@pytest.fixture(scope="module")
def direct():
    return run_notebook("python3")


@pytest.fixture(scope="module")
def bridged(kernelspec_root):
    with ks.start_server() as server:
        yield run_notebook(ks.KERNEL_NAME, dict(os.environ, **ks.server_env(server)))


def test_the_bridge_stores_the_same_widget_models_and_states_as_a_direct_kernel(direct, bridged):
    assert len(widget_models(direct)) > 30
    assert widget_models(bridged) == widget_models(direct)


def test_what_the_states_say(bridged):
    sliders = [state["value"] for state in models_named(bridged, "IntSliderModel")]
    assert 9 in sliders  # changed by kernel code after display
    captured = [output for state in models_named(bridged, "OutputModel") for output in state["outputs"]]
    assert {"name": "stdout", "output_type": "stream", "text": "captured\n"} in captured  # `with out:`
    assert {"name": "stdout", "output_type": "stream", "text": "x is 3\n"} in captured  # interact's first
    bars = models_named(bridged, "FloatProgressModel")
    assert bars and bars[0]["value"] == bars[0]["max"] == 5  # the tqdm bar at its end


@pytest.mark.parametrize("index", range(len(CELLS)))
def test_each_cell_stores_the_same_outputs(direct, bridged, index):
    assert canonical(bridged.cells[index].outputs) == canonical(direct.cells[index].outputs)
    assert "captured" not in json.dumps(bridged.cells[2].outputs)  # captured by the Output widget


def test_without_our_comms_extension_widget_cells_complete_with_text_views(kernelspec_root):
    with ks.start_server(extensions=False) as server:
        nb = run_notebook(ks.KERNEL_NAME, dict(os.environ, **ks.server_env(server)))
    assert not widget_models(nb)
    views = [o for cell in nb.cells for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert not views
    text = json.dumps([cell.outputs for cell in nb.cells])
    assert "IntSlider(value=5)" in text and "new value 9" in text
