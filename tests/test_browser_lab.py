"""Living with the bridge in JupyterLab: a user picks "Python (remote)" in the launcher, types
cells and sees their output, and answers an ``input()`` through the page.

JupyterLab is started by the test (tests/browser.py) with the bridge's kernelspec installed by
``remote_kernel.install.install`` into a temporary JUPYTER_PATH, pointing at the embedded server
subprocess (the ``server`` fixture; keys in JupyterLab's environment, never in kernel.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from browser import Chromium, JupyterLab, require_chromium, screenshot, wait_kernel_idle
from kernel_support import server_env
from remote_kernel import install

pytestmark = pytest.mark.browser

DISPLAY_NAME = "Python (remote)"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


@pytest.fixture(scope="module")
def lab_with_bridge(server, tmp_path_factory):
    require_chromium()
    prefix = tmp_path_factory.mktemp("lab-specs")
    where = install.install(prefix=str(prefix), endpoint=server.url, display_name=DISPLAY_NAME)
    spec = json.loads((Path(where) / "kernel.json").read_text())
    assert spec["display_name"] == DISPLAY_NAME and server.secret_key not in json.dumps(spec)
    spec_root = prefix / "share" / "jupyter"
    env = {"JUPYTER_PATH": os.pathsep.join(filter(None, [str(spec_root), os.environ.get("JUPYTER_PATH")])),
           **server_env(server)}
    env.pop("BACKEND_ENDPOINT")  # the endpoint comes from the kernelspec, as installed
    root = tmp_path_factory.mktemp("lab-root")
    with JupyterLab(root, env=env) as lab:
        yield lab


def _run_in_cell(page, index: int, code: str) -> None:
    """Type ``code`` into the notebook's ``index``-th cell and run it with Shift+Enter (which
    adds the next empty cell)."""
    cells = page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell")
    cells.nth(index).wait_for(timeout=30_000)
    editor = cells.nth(index).locator(".cm-content")
    editor.click()
    # insert_text: no key events, so CodeMirror adds no auto-indent or closing brackets
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def _output(page, index: int):
    return page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output")


def test_launcher_tile_typed_cells_plot_and_input(lab_with_bridge, server):
    lab = lab_with_bridge
    with Chromium() as chromium:
        page = chromium.new_page()
        try:
            page.goto(lab.url("lab/workspaces/tour-lab?reset"), timeout=90_000)
            tile = page.locator(f'.jp-LauncherCard[data-category="Notebook"][title="{DISPLAY_NAME}"]')
            tile.wait_for(timeout=90_000)
            tile.click()
            page.wait_for_selector(f"{NOTEBOOK} .jp-Notebook .jp-Cell", timeout=60_000)
            wait_kernel_idle(page, timeout=120)
            # the notebook's kernel is the bridge, as the status bar names it
            assert page.locator(".jp-StatusBar-TextItem", has_text=DISPLAY_NAME).count() >= 1

            _run_in_cell(page, 0, "import os, sys\nprint('hello from', 'the bridge')\n"
                                  "print('cwd:', os.getcwd())\nprint('to stderr', file=sys.stderr)")
            out0 = _output(page, 0)
            out0.filter(has_text="hello from the bridge").wait_for(timeout=120_000)
            # it ran in a session of the embedded server, not in a local kernel
            text = "\n".join(out0.all_inner_texts())
            assert any(f"cwd: {root}" in text for root in (server.root, os.path.realpath(server.root))), text
            assert out0.filter(has_text="to stderr").count() == 1
            assert page.locator(f"{NOTEBOOK} .jp-Cell").nth(0).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 1

            _run_in_cell(page, 1, "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                                  "plt.figure(figsize=(4, 2))\nplt.plot([0, 1, 2, 3], [0, 1, 4, 9])\n"
                                  "plt.title('remote plot')\nplt.show()")
            img = _output(page, 1).locator("img")
            img.first.wait_for(timeout=120_000)
            assert img.first.get_attribute("src").startswith("data:image/png;base64,")
            # the picture really decoded and has a size (not a broken image)
            width = img.first.evaluate("i => i.complete ? i.naturalWidth : 0")
            assert width > 100, width

            _run_in_cell(page, 2, "name = input('Your name? ')\nprint('echo:', name.upper())")
            box = page.locator(f"{NOTEBOOK} .jp-Stdin-input")
            box.wait_for(timeout=120_000)
            assert "Your name?" in page.locator(f"{NOTEBOOK} .jp-Stdin-prompt").first.inner_text()
            box.click()
            box.type("Ada Lovelace")
            page.keyboard.press("Enter")
            _output(page, 2).filter(has_text="echo: ADA LOVELACE").wait_for(timeout=120_000)
            wait_kernel_idle(page, timeout=120)
            page.wait_for_timeout(300)  # let the last output paint before the picture
            shot = screenshot(page, "lab-bridge-kernel")
            assert shot.stat().st_size > 10_000
            errors = [line for line in chromium.console if line.startswith("pageerror")]
            assert not errors, errors
        finally:
            page.close()
            lab.shutdown_kernels()
