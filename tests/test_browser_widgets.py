"""Widgets through the bridge in a real JupyterLab in headless Chromium (issue 14).

JupyterLab is started by the test (tests/browser.py) with the bridge's kernelspec installed by
``remote_kernel.install.install`` into a temporary JUPYTER_PATH, pointing at the embedded server
subprocess (the ``server`` fixture). The notebook names that kernelspec, so opening it starts the
bridge; every cell and every widget callback runs in the server's inner kernel. The page acts as
a user would:

* moves an ``IntSlider`` with the keyboard → a remote ``observe`` callback writes into an
  ``Output`` widget, and the text appears on the page;
* clicks a ``Button`` → a remote handler changes a ``Label`` and writes into an ``Output``;
* runs a ``tqdm.auto`` loop → the progress bar fills to 100 % and reads 5/5;
* checks that an ``Output`` widget captures what a remote callback *prints* (``with out:``),
  which keys on the parent msg_id of the frontend's comm message.

Each callback does its ``with out: print(...)`` first and its widget update last: the bridge
delivers the inner kernel's messages in order, so once the page shows the update, every message
before it has reached the page too, and the capture can be checked without waiting.

Screenshots go to ``artifacts/`` (``lab-widgets-*.png``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from browser import Chromium, JupyterLab, require_chromium, screenshot, wait_kernel_idle
from kernel_support import server_env
from remote_kernel import install

# JupyterLab in Chromium with a kernel on the embedded server: end to end, not the fast tier
pytestmark = [pytest.mark.browser, pytest.mark.slow]

pytest.importorskip("ipywidgets")
pytest.importorskip("tqdm")

KERNEL = "remote-widgets-test"
DISPLAY_NAME = "Python (remote widgets)"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
TIMEOUT = 120_000  # ms; generous: two shared cores also run JupyterLab, Chromium and two kernels

SLIDER_CELL = """\
import os
import ipywidgets as w
slider = w.IntSlider(value=0, min=0, max=10, description='remote')
seen = w.Output()
def on_move(change):
    seen.append_stdout(f"observer saw {change['new']}\\n")
slider.observe(on_move, 'value')
w.VBox([slider, seen])"""

BUTTON_CELL = """\
clicks = w.Label(value='no clicks yet')
where = w.Output()
button = w.Button(description='Run remote handler')
count = 0
def on_click(_):
    global count
    count += 1
    where.append_stdout(f'handler {count} ran in {os.getcwd()}\\n')
    clicks.value = f'{count} click(s) handled'
button.on_click(on_click)
w.VBox([button, clicks, where])"""

CAPTURE_CELL = """\
probe = w.IntSlider(value=0, min=0, max=10, description='capture')
captured = w.Output()
press = w.Button(description='Print remotely')
handled = w.Label(value='nothing handled')
def on_probe(change):
    with captured:
        print(f"observer printed {change['new']}")
    handled.value = f"slider {change['new']} handled"
def on_press(_):
    with captured:
        print("handler printed")
    handled.value = "button handled"
probe.observe(on_probe, 'value')
press.on_click(on_press)
w.VBox([probe, press, handled, captured])"""

TQDM_CELL = """\
import time
from tqdm.auto import tqdm
for i in tqdm(range(5), desc='remote work'):
    time.sleep(0.1)"""

STATE_CELL = "print(f'kernel holds slider={slider.value} label={clicks.value!r}')"

CELLS = [SLIDER_CELL, BUTTON_CELL, CAPTURE_CELL, TQDM_CELL, STATE_CELL]
SLIDER, BUTTON, CAPTURE, TQDM, STATE = range(len(CELLS))


@pytest.fixture(scope="module")
def widgets_lab(server, tmp_path_factory):
    """JupyterLab with the bridge to ``server`` installed as a kernelspec, and the notebook."""
    require_chromium()
    prefix = tmp_path_factory.mktemp("lab-specs")
    where = install.install(prefix=str(prefix), name=KERNEL, endpoint=server.url, display_name=DISPLAY_NAME)
    spec = json.loads((Path(where) / "kernel.json").read_text())
    assert server.secret_key not in json.dumps(spec)
    spec_root = prefix / "share" / "jupyter"
    env = {"JUPYTER_PATH": os.pathsep.join(filter(None, [str(spec_root), os.environ.get("JUPYTER_PATH")])),
           **server_env(server)}
    env.pop("BACKEND_ENDPOINT")  # the endpoint comes from the kernelspec, as installed
    root = tmp_path_factory.mktemp("lab-root")
    nb = new_notebook(cells=[new_code_cell(code) for code in CELLS])
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": DISPLAY_NAME, "language": "python"}
    nbformat.write(nb, str(root / "widgets.ipynb"))
    with JupyterLab(root, env=env) as lab:
        yield lab


@pytest.fixture(scope="module")
def notebook(widgets_lab):
    """The notebook open in Chromium, its bridge kernel started and idle; yields (page, console)."""
    with Chromium() as chromium:
        page = chromium.new_page()
        try:
            page.goto(widgets_lab.notebook_url("widgets.ipynb"), timeout=TIMEOUT)
            page.wait_for_selector(f"{NOTEBOOK} .jp-Notebook .jp-Cell", timeout=TIMEOUT)
            wait_kernel_idle(page, timeout=TIMEOUT / 1000)
            # the notebook's kernel is the bridge, as the status bar names it
            assert page.locator(".jp-StatusBar-TextItem", has_text=DISPLAY_NAME).count() >= 1
            yield page, chromium.console
        finally:
            page.close()
            widgets_lab.shutdown_kernels()


def _cell(page, index: int):
    return page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(index)


def _run_cell(page, index: int) -> None:
    """Select cell ``index`` in command mode (its prompt) and run it in place (Ctrl+Enter)."""
    wait_kernel_idle(page, timeout=TIMEOUT / 1000)
    _cell(page, index).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+Enter")


def _ran_cell(page, index: int):
    """Run cell ``index`` unless it has run already (a test run alone, or after another)."""
    cell = _cell(page, index)
    if not cell.locator(".jp-OutputArea-output").count():
        _run_cell(page, index)
    return cell


def _no_page_errors(console: list[str]) -> None:
    errors = [line for line in console if line.startswith("pageerror")]
    assert not errors, errors


def _press_right(page, handle, times: int) -> None:
    """Focus a slider's handle and press → (each step is a comm_msg from the page)."""
    handle.focus()
    for _ in range(times):
        page.keyboard.press("ArrowRight")


def test_slider_moved_on_the_page_runs_the_remote_observer(notebook):
    page, console = notebook
    cell = _ran_cell(page, SLIDER)
    handle = cell.locator(".widget-slider .noUi-handle")
    handle.wait_for(timeout=TIMEOUT)
    readout = cell.locator(".widget-readout")
    assert readout.inner_text().strip() == "0"
    _press_right(page, handle, 3)
    output = cell.locator(".widget-output")
    output.filter(has_text="observer saw 3").wait_for(timeout=TIMEOUT)
    assert readout.inner_text().strip() == "3"
    # ipywidgets' frontend may coalesce quick steps into one update (its message throttle):
    # every value the remote observer saw is a step the page took, in order, ending at 3
    lines = [line for line in output.inner_text().splitlines() if line.strip()]
    values = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert values == sorted(set(values)) and values[-1] == 3 and set(values) <= {1, 2, 3}, lines
    screenshot(page, "lab-widgets-slider", cell)
    _no_page_errors(console)


def test_button_click_runs_the_remote_handler(notebook, server):
    page, console = notebook
    cell = _ran_cell(page, BUTTON)
    button = cell.locator("button.widget-button", has_text="Run remote handler")
    button.wait_for(timeout=TIMEOUT)
    cell.locator(".widget-label", has_text="no clicks yet").wait_for(timeout=TIMEOUT)
    button.click()
    cell.locator(".widget-label", has_text="1 click(s) handled").wait_for(timeout=TIMEOUT)
    button.click()
    cell.locator(".widget-label", has_text="2 click(s) handled").wait_for(timeout=TIMEOUT)
    # the handler wrote before it set the label, and the bridge keeps the kernel's order
    text = cell.locator(".widget-output").inner_text()
    # it ran in a session of the embedded server, not in a local kernel
    roots = (server.root, os.path.realpath(server.root))
    for n in (1, 2):
        assert any(f"handler {n} ran in {root}" in text for root in roots), text
    screenshot(page, "lab-widgets-button", cell)
    _no_page_errors(console)


def test_output_widget_captures_what_remote_callbacks_print(notebook):
    """``with out: print(...)`` in an observer and in a click handler: the Output widget captures
    by the parent msg_id of the page's comm message, on that message's future, which JupyterLab
    keeps only until the kernel says idle for it."""
    page, console = notebook
    cell = _ran_cell(page, CAPTURE)
    handle = cell.locator(".widget-slider .noUi-handle")
    handle.wait_for(timeout=TIMEOUT)
    _press_right(page, handle, 1)
    handled = cell.locator(".widget-label")
    handled.filter(has_text="slider 1 handled").wait_for(timeout=TIMEOUT)
    cell.locator("button.widget-button", has_text="Print remotely").click()
    handled.filter(has_text="button handled").wait_for(timeout=TIMEOUT)
    wait_kernel_idle(page, timeout=TIMEOUT / 1000)
    screenshot(page, "lab-widgets-capture", cell)
    # both callbacks printed before they set the label, which the page shows
    text = cell.locator(".widget-output").inner_text()
    assert "observer printed 1" in text and "handler printed" in text, (
        f"the Output widget shows {text!r}: the remote callbacks' prints never reached it")
    _no_page_errors(console)


def test_tqdm_auto_bar_fills_to_100_percent(notebook):
    page, console = notebook
    cell = _ran_cell(page, TQDM)
    # tqdm.auto picks tqdm.notebook in a kernel with ipywidgets: an HBox of HTML, progress, HTML
    bar = cell.locator(".widget-hprogress")
    bar.wait_for(timeout=TIMEOUT)
    box = cell.locator(".widget-hbox", has=page.locator(".widget-hprogress"))
    box.filter(has_text="5/5").wait_for(timeout=TIMEOUT)
    box.filter(has_text="100%").wait_for(timeout=TIMEOUT)
    # tqdm marks a finished bar as a success; the bar itself is full
    cell.locator(".widget-hprogress .progress-bar-success").wait_for(timeout=TIMEOUT)
    text = box.inner_text().replace("\u2007", " ")  # tqdm pads with figure spaces
    assert "remote work" in text and "5/5" in text and "100%" in text, text
    width = bar.locator(".progress-bar").evaluate("el => el.style.width")
    assert width == "100%", width
    wait_kernel_idle(page, timeout=TIMEOUT / 1000)
    screenshot(page, "lab-widgets-tqdm", cell)
    _no_page_errors(console)


def test_the_remote_kernel_holds_what_the_page_shows(notebook):
    """Whatever the page did to the slider and the button, the remote kernel's objects agree."""
    page, console = notebook
    slider_cell, button_cell = _ran_cell(page, SLIDER), _ran_cell(page, BUTTON)
    slider_cell.locator(".widget-readout").wait_for(timeout=TIMEOUT)
    button_cell.locator(".widget-label").wait_for(timeout=TIMEOUT)
    wait_kernel_idle(page, timeout=TIMEOUT / 1000)
    shown_value = slider_cell.locator(".widget-readout").inner_text().strip()
    shown_label = button_cell.locator(".widget-label").inner_text().strip()
    _run_cell(page, STATE)
    out = _cell(page, STATE).locator(".jp-OutputArea-output")
    out.filter(has_text="kernel holds").wait_for(timeout=TIMEOUT)
    assert f"kernel holds slider={shown_value} label={shown_label!r}" in out.inner_text()
    screenshot(page, "lab-widgets-notebook")
    _no_page_errors(console)
