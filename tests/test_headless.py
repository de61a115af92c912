"""Headless runs through the bridge: a failing cell makes `jupyter nbconvert --execute` fail
(and pass with --allow-errors), and papermill marks the notebook failed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kernel_support as ks

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "failing.ipynb"
KERNEL = "remote-headless"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("headless-specs")
    ks.write_kernelspec(root, name=KERNEL)
    with ks.start_server() as srv:
        full = dict(os.environ)
        full["JUPYTER_PATH"] = os.pathsep.join([str(root)] + [p for p in full.get("JUPYTER_PATH", "").split(os.pathsep) if p])
        full.update(ks.server_env(srv))
        yield full


def run(args, env, cwd):
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def test_nbconvert_fails_on_the_failing_cell(env, tmp_path):
    nb = tmp_path / "failing.ipynb"
    shutil.copy(NOTEBOOK, nb)
    proc = run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                f"--ExecutePreprocessor.kernel_name={KERNEL}", "--output", "out.ipynb", str(nb)], env, tmp_path)
    assert proc.returncode != 0
    assert "ZeroDivisionError" in proc.stderr


def test_nbconvert_allow_errors_passes_and_keeps_the_error(env, tmp_path):
    nb = tmp_path / "failing.ipynb"
    shutil.copy(NOTEBOOK, nb)
    proc = run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--allow-errors",
                f"--ExecutePreprocessor.kernel_name={KERNEL}", "--output", "out.ipynb", str(nb)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in out.cells if c.cell_type == "code"]
    assert code[0].outputs[0]["text"] == "before the failure\n"
    assert [o["output_type"] for o in code[1].outputs] == ["error"]
    assert code[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert code[2].outputs[0]["text"] == "after the failure\n"


def test_papermill_marks_the_notebook_failed(env, tmp_path):
    out = tmp_path / "pm-out.ipynb"
    proc = run([sys.executable, "-m", "papermill", "-k", KERNEL, str(NOTEBOOK), str(out)], env, tmp_path)
    assert proc.returncode != 0
    assert "ZeroDivisionError" in proc.stderr
    result = json.loads(out.read_text())
    assert result["metadata"]["papermill"]["exception"] is True
    failed = [c for c in result["cells"] if c.get("metadata", {}).get("papermill", {}).get("exception")]
    assert failed, "papermill did not mark the failing cell"
