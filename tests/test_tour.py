"""The tour notebook through the three headless runners, as real subprocesses.

`jupyter nbconvert --execute`, `jupyter execute` and `papermill` run ``notebooks/tour.ipynb``
through the bridge kernelspec ``remote-python``; ``notebooks/failing.ipynb`` must fail each of
them.  First against an explicitly configured endpoint (the embedded server as a subprocess,
keys in the environment, the spec written by ``remote_kernel.install.install(endpoint=url)``),
then with no configuration at all (the kernel's private embedded server), which is what
``./dev demo`` runs.  Every executed notebook is checked output by output.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kernel_support as ks
from remote_kernel import install

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
KERNEL = "remote-python"
BIN = Path(sys.executable).parent
RUN_TIMEOUT = 280


# ---- environments -------------------------------------------------------------------------------


def _env_with_path(spec_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY",
                "SORNA_ENDPOINT", "SORNA_ACCESS_KEY", "SORNA_SECRET_KEY"):
        env.pop(var, None)
    # the temporary spec wins over any other remote-python on the machine
    env["JUPYTER_PATH"] = os.pathsep.join([str(spec_root)] + [p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p])
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


@pytest.fixture(scope="module")
def explicit_env(server, tmp_path_factory):
    """remote-python installed with ``endpoint=server.url``; keys only in the environment."""
    prefix = tmp_path_factory.mktemp("tour-explicit")
    where = install.install(prefix=str(prefix), endpoint=server.url)
    spec = json.loads((Path(where) / "kernel.json").read_text())
    assert f"--APIConfig.endpoint={server.url}" in spec["argv"]
    assert server.secret_key not in json.dumps(spec)
    env = _env_with_path(prefix / "share" / "jupyter")
    env["BACKEND_ACCESS_KEY"] = server.access_key
    env["BACKEND_SECRET_KEY"] = server.secret_key
    return env


def _embedded_default_works(env: dict[str, str]) -> str | None:
    """None when a bridge kernel with no BACKEND_* env runs a cell; else why not."""
    if not (REPO / "remote_kernel" / "kernel" / "embedded.py").is_file():
        return "remote_kernel/kernel/embedded.py does not exist yet"
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with ks.running_kernel({}, name=KERNEL) as (_km, kc):
            reply, outputs, _ = ks.execute(kc, "print(6 * 7)", timeout=120)
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        return f"a kernel without configuration did not start: {type(exc).__name__}: {exc}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if reply.get("status") != "ok" or ks.stdout_of(outputs) != "42\n":
        return f"a kernel without configuration did not run a cell: {reply} {outputs}"
    return None


@pytest.fixture(scope="module")
def embedded_env(tmp_path_factory):
    """remote-python exactly as shipped (kernelspecs/remote-python), no endpoint, no keys."""
    prefix = tmp_path_factory.mktemp("tour-embedded")
    where = install.install(prefix=str(prefix))
    assert not any(a.startswith("--APIConfig.endpoint") for a in json.loads((Path(where) / "kernel.json").read_text())["argv"])
    env = _env_with_path(prefix / "share" / "jupyter")
    why = _embedded_default_works(env)
    if why:
        pytest.skip(f"the embedded default is not available: {why}")
    return env


def assert_no_process_left_in(folder: Path, wait: float = 15) -> None:
    """The private embedded server and its kernels run in the notebook's folder: once the runner
    has exited, none of them may still be alive there (a bounded poll of the process table:
    processes ending send no event)."""
    import time

    import psutil

    folder = str(folder.resolve())
    deadline = time.monotonic() + wait
    while True:
        left = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.cwd() == folder or proc.cwd().startswith(folder + os.sep):
                    left.append((proc.pid, " ".join(proc.info["cmdline"] or [])[:120]))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"processes survived the run: {left}"


def _workdir(tmp_path: Path, notebook: str) -> Path:
    """A copy of the notebook and its data next to each other (the kernel's cwd)."""
    shutil.copy(NOTEBOOKS / notebook, tmp_path / notebook)
    shutil.copytree(NOTEBOOKS / "data", tmp_path / "data")
    return tmp_path / notebook


# ---- the runners ---------------------------------------------------------------------------------


def run_nbconvert(nb: Path, env: dict, extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, Path]:
    out = nb.with_name("nbconvert-out.ipynb")
    proc = subprocess.run(
        [str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         f"--ExecutePreprocessor.kernel_name={KERNEL}", "--ExecutePreprocessor.timeout=240",
         "--output", out.name, *extra, str(nb)],
        env=env, cwd=nb.parent, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc, out


def run_execute(nb: Path, env: dict, extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, Path]:
    proc = subprocess.run(
        [str(BIN / "jupyter"), "execute", "--inplace", f"--kernel_name={KERNEL}", "--timeout=240", *extra, str(nb)],
        env=env, cwd=nb.parent, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc, nb


def run_papermill(nb: Path, env: dict, extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, Path]:
    out = nb.with_name("papermill-out.ipynb")
    proc = subprocess.run(
        [str(BIN / "papermill"), "-k", KERNEL, "--cwd", str(nb.parent), "--execution-timeout", "240",
         *extra, str(nb), str(out)],
        env=env, cwd=nb.parent, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc, out


RUNNERS = {"nbconvert": run_nbconvert, "execute": run_execute, "papermill": run_papermill}


# ---- the checks ----------------------------------------------------------------------------------


def _text(outputs: list, name: str) -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == name)


def _data(outputs: list, output_type: str, mime: str) -> list:
    return [o["data"][mime] for o in outputs if o["output_type"] == output_type and mime in o.get("data", {})]


def check_tour(path: Path, greeting: str = "Hello", error_shown: bool = True) -> dict:
    """Assert every output the tour promises; returns the cells by id."""
    nb = nbformat.read(path, as_version=4)
    cells = {c.get("id"): c for c in nb.cells if c.cell_type == "code"}
    for cid, cell in cells.items():
        errors = [o for o in cell.outputs if o["output_type"] == "error"]
        if cid == "tour-11":
            continue
        assert not errors, f"cell {cid} failed: {errors}"
        assert isinstance(cell.execution_count, int), f"cell {cid} was not executed"

    out = cells["tour-02"].outputs
    assert _text(out, "stdout").startswith(f"{greeting} from "), out
    assert "running Python 3." in _text(out, "stdout")
    assert _text(out, "stderr") == "this line goes to stderr\n"

    pngs = _data(cells["tour-04"].outputs, "display_data", "image/png")
    assert len(pngs) == 1, cells["tour-04"].outputs
    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")

    svgs = _data(cells["tour-05"].outputs, "display_data", "image/svg+xml")
    assert len(svgs) == 1 and "<svg" in svgs[0] and ">SVG</text>" in svgs[0], cells["tour-05"].outputs

    html = _data(cells["tour-06"].outputs, "execute_result", "text/html")
    assert len(html) == 1 and "<table>" in html[0] and "<td>Lima</td><td>19.8</td>" in html[0]

    results = [o for o in cells["tour-07"].outputs if o["output_type"] == "execute_result"]
    assert len(results) == 1 and results[0]["data"]["text/plain"] == "42", cells["tour-07"].outputs
    assert results[0]["execution_count"] == cells["tour-07"].execution_count

    assert _text(cells["tour-09"].outputs, "stdout") == (
        "no stdin here: StdinNotImplementedError\nNice to meet you, headless reader!\n")

    errors = [o for o in cells["tour-11"].outputs if o["output_type"] == "error"]
    if error_shown:
        assert len(errors) == 1 and errors[0]["ename"] == "ZeroDivisionError", cells["tour-11"].outputs
        assert any("1 / 0" in line or "1/0" in line for line in errors[0]["traceback"]) or errors[0]["evalue"]
    else:
        assert errors == [], cells["tour-11"].outputs

    upload = _text(cells["tour-13"].outputs, "stdout")
    assert "uploaded data/sample.csv → uploaded.csv (" in upload, upload
    assert upload.endswith("warmest: Lima\n"), upload

    listing = _text(cells["tour-14"].outputs, "stdout")
    assert "downloaded result.txt → " in listing and "downloaded-result.txt (14 bytes)" in listing, listing
    lines = listing.splitlines()
    assert any(line.split()[-1:] == ["uploaded.csv"] for line in lines), listing
    assert any(line.split()[-1:] == ["result.txt"] for line in lines), listing

    assert "hello from batch mode on " in _text(cells["tour-16"].outputs, "stdout"), cells["tour-16"].outputs
    assert _text(cells["tour-17"].outputs, "stdout") == "cleaned up\n"
    return cells


def check_failed(proc: subprocess.CompletedProcess, out: Path, runner: str) -> None:
    assert proc.returncode != 0, f"{runner} passed a failing notebook:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
    assert "ZeroDivisionError" in proc.stderr, proc.stderr[-2000:]
    if runner == "papermill":  # papermill writes the partial result and marks it
        result = nbformat.read(out, as_version=4)
        assert result.metadata["papermill"]["exception"] is True
        outputs = {c.source: c.outputs for c in result.cells if c.cell_type == "code"}
        assert _text(outputs["print('before the failure')"], "stdout") == "before the failure\n"
        assert outputs["print('after the failure')"] == [], "papermill ran on after the failure"


def run_tour(runner: str, nb: Path, env: dict, extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the tour; every runner must succeed.  papermill (2.7) fails a run on any error output,
    even one the `raises-exception` tag allows, so it runs with `-p show_error False`."""
    if runner == "papermill":
        extra = (*extra, "-p", "show_error", "False")
    proc, out = RUNNERS[runner](nb, env, extra)
    assert proc.returncode == 0, f"{runner} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc, out


# ---- explicit endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_tour_runs_against_a_configured_endpoint(runner, explicit_env, tmp_path, server):
    nb = _workdir(tmp_path, "tour.ipynb")
    proc, out = run_tour(runner, nb, explicit_env)
    check_tour(out, error_shown=runner != "papermill")
    # the download landed on the local side (the kernel's cwd, next to the notebook)
    assert (tmp_path / "downloaded-result.txt").read_text() == "warmest: Lima\n"
    assert server.secret_key not in proc.stdout + proc.stderr + out.read_text()


def test_papermill_injects_parameters(explicit_env, tmp_path):
    nb = _workdir(tmp_path, "tour.ipynb")
    proc, out = run_tour("papermill", nb, explicit_env, ("-p", "greeting", "Hi"))
    cells = check_tour(out, greeting="Hi", error_shown=False)
    nb_json = json.loads(out.read_text())
    injected = [c for c in nb_json["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(injected) == 1 and "greeting = \"Hi\"" in "".join(injected[0]["source"])
    assert _text(cells["tour-02"].outputs, "stdout").startswith("Hi from ")


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_failing_notebook_fails_against_a_configured_endpoint(runner, explicit_env, tmp_path):
    nb = _workdir(tmp_path, "failing.ipynb")
    proc, out = RUNNERS[runner](nb, explicit_env)
    check_failed(proc, out, runner)


# ---- no configuration: the kernel's embedded server (./dev demo) ------------------------------


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_tour_runs_with_no_configuration(runner, embedded_env, tmp_path):
    nb = _workdir(tmp_path, "tour.ipynb")
    extra = ("-p", "greeting", "Hi") if runner == "papermill" else ()
    proc, out = run_tour(runner, nb, embedded_env, extra)
    check_tour(out, greeting="Hi" if runner == "papermill" else "Hello", error_shown=runner != "papermill")
    # the sessions ran in the kernel's cwd: the cleanup cell removed every file the tour made
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not {"uploaded.csv", "result.txt", "downloaded-result.txt", "hello_batch.py"} & set(left), left
    assert_no_process_left_in(tmp_path)


def test_dev_demo_command_renders_html(embedded_env, tmp_path):
    """The exact command `./dev demo` runs."""
    nb = _workdir(tmp_path, "tour.ipynb")
    proc = subprocess.run(
        [str(BIN / "jupyter"), "nbconvert", "--to", "html", "--execute",
         f"--ExecutePreprocessor.kernel_name={KERNEL}", "--ExecutePreprocessor.timeout=300",
         "--output-dir", str(tmp_path / "out"), str(nb)],
        env=embedded_env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tmp_path / "out" / "tour.html").read_text()
    svgs = [base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)]
    assert any(">SVG</text>" in svg for svg in svgs), "the tour's SVG is not in the page"
    for needle in ("data:image/png;base64,", "<td>Lima</td>", "ZeroDivisionError", "hello from batch mode", "cleaned up"):
        assert needle in html, needle


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_failing_notebook_fails_with_no_configuration(runner, embedded_env, tmp_path):
    nb = _workdir(tmp_path, "failing.ipynb")
    proc, out = RUNNERS[runner](nb, embedded_env)
    check_failed(proc, out, runner)
    assert_no_process_left_in(tmp_path)
