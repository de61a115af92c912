"""Exact outputs: a notebook run with nbclient through the bridge (embedded server, our
extensions on) stores the same outputs and fails the same cells as the same notebook run on a
direct ipykernel.  Each cell is one difference that a comparison of public notebooks found."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import kernel_support as ks

pytestmark = pytest.mark.slow

# An execute_result that carries a display_id, sent the way a library does it, then updated
# from a later cell (nbclient's own update-display-id notebook does the same).
RESULT_WITH_DISPLAY_ID = """\
ip = get_ipython()
content = {"data": {"text/plain": "first"}, "metadata": {}, "transient": {"display_id": "result-1"},
           "execution_count": ip.execution_count}
_ = ip.kernel.session.send(ip.kernel.iopub_socket, "execute_result", content, parent=ip.kernel.get_parent())
"""
UPDATE_IT = """\
from IPython.display import update_display
update_display({"text/plain": "updated"}, display_id="result-1", raw=True)
"""

CELLS = {
    # a bundle without text/plain: a direct kernel sends none, so the bridge adds none
    "html only": 'from IPython.display import display\ndisplay({"text/html": "<b>bold</b>"}, raw=True)',
    "result with display id": RESULT_WITH_DISPLAY_ID,
    "update of the result": UPDATE_IT,
    # the kernel replies "error" but sends no error output (the message goes to stderr)
    "unknown magic": "%this_magic_does_not_exist",
    "an exception": "1/0",
    "a plain result": "6 * 7",
}


def run_notebook(kernel_name: str, env: dict | None) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(code) for code in CELLS.values()])
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120, allow_errors=True)
    client.execute(**({"env": env} if env is not None else {}))
    return nb


def comparable(output: dict, label: str) -> dict:
    output = dict(output)
    if label == "result with display id":  # sent by hand with the inner kernel's own counter,
        output.pop("execution_count", None)  # which the bridge maps to its In[n], as for every result
    if output.get("output_type") == "error":  # tracebacks name the kernel's own frames
        output.pop("traceback", None)
    return output


@pytest.fixture(scope="module")
def both_runs(kernelspec_root):
    direct = run_notebook("python3", None)
    with ks.start_server() as server:
        env = dict(os.environ, **ks.server_env(server))
        bridged = run_notebook(ks.KERNEL_NAME, env)
    return direct, bridged


@pytest.mark.parametrize("index, label", list(enumerate(CELLS)))
def test_each_cell_stores_the_outputs_a_direct_kernel_stores(both_runs, index, label):
    direct, bridged = both_runs
    want = [comparable(o, label) for o in direct.cells[index].outputs]
    got = [comparable(o, label) for o in bridged.cells[index].outputs]
    assert got == want, f"{label}: {got} != {want}"


def test_the_update_reached_the_result_in_both(both_runs):
    for nb in both_runs:
        [output] = nb.cells[1].outputs
        assert output["output_type"] == "execute_result" and output["data"] == {"text/plain": "updated"}
