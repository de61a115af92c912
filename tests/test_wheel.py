"""The wheel as a user gets it: built from the tree, installed into a fresh virtual environment,
its data files make Jupyter find the ``remote-python`` kernelspec and the drawing extension.

Building runs the JupyterLab extension build (jlpm) the first time; when
``remote_kernel/labextension/package.json`` exists the built extension is reused.  Installing
pulls the dependencies from PyPI, so this needs the network; it is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def _run(args, timeout: float, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{args[:4]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-w", str(tmp / "dist")], 900)
    wheels = list((tmp / "dist").glob("remote_kernel-*.whl"))
    assert len(wheels) == 1, wheels
    _run(["python3", "-m", "venv", str(tmp / "venv")], 300)
    py = tmp / "venv" / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheels[0]), "jupyterlab>=4.2,<5"], 900)
    # the user's environment as a fresh machine would have it: no JUPYTER_* from the test session
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
    home = tmp / "home"
    home.mkdir()
    env.update(HOME=str(home), PATH=os.pathsep.join([str(tmp / "venv" / "bin"), env.get("PATH", "")]))
    return tmp / "venv", env, wheels[0]


def test_wheel_carries_the_kernelspec_and_the_extension(venv):
    import zipfile

    _, _, wheel = venv
    names = zipfile.ZipFile(wheel).namelist()
    data = [n for n in names if ".data/data/share/jupyter/" in n]
    assert any(n.endswith("share/jupyter/kernels/remote-python/kernel.json") for n in data), data
    assert any(n.endswith("share/jupyter/labextensions/@remote-kernel/drawing/package.json") for n in data), data
    assert any(n.startswith("remote_kernel/kernelspecs/remote-python/") for n in names)


def test_jupyter_kernelspec_list_finds_remote_python(venv):
    root, env, _ = venv
    proc = _run([str(root / "bin" / "jupyter"), "kernelspec", "list", "--json"], 120, env=env, cwd=root)
    specs = json.loads(proc.stdout)["kernelspecs"]
    assert "remote-python" in specs, sorted(specs)
    found = specs["remote-python"]
    assert Path(found["resource_dir"]).resolve() == (root / "share" / "jupyter" / "kernels" / "remote-python").resolve()
    assert found["spec"]["display_name"] == "Python (remote)"
    assert found["spec"]["argv"][:3] == ["python", "-m", "remote_kernel.kernel"]


def test_the_installed_kernel_module_and_command_work(venv):
    root, env, _ = venv
    _run([str(root / "bin" / "python"), "-c", "import remote_kernel.kernel, remote_kernel.server"], 120, env=env, cwd=root)
    proc = _run([str(root / "bin" / "remote-kernel"), "list"], 120, env=env, cwd=root)
    assert "remote-python" in proc.stdout and str(root) in proc.stdout, proc.stdout


def test_user_install_all_beside_the_shipped_remote_python(venv, tmp_path):
    """Issue 21: ``install --user --all`` in the wheel's environment once wrote a user-level
    remote-python that Jupyter never used (a virtual environment's own directory comes first),
    and ``uninstall remote-python`` then removed the environment's copy."""
    root, env, _ = venv
    env = dict(env, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    shipped = root / "share" / "jupyter" / "kernels" / "remote-python"
    rk = str(root / "bin" / "remote-kernel")
    proc = subprocess.run([rk, "install", "--user", "--all"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "skipped remote-python" in proc.stderr and str(shipped) in proc.stderr, proc.stderr
    assert (tmp_path / "data" / "kernels" / "remote-lua" / "kernel.json").is_file()
    assert not (tmp_path / "data" / "kernels" / "remote-python").exists()
    lua = json.loads((tmp_path / "data" / "kernels" / "remote-lua" / "kernel.json").read_text())
    assert Path(lua["argv"][0]).is_absolute() and Path(lua["argv"][0]).parent == root / "bin", lua["argv"]

    proc = subprocess.run([rk, "uninstall", "remote-python"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=root)
    assert proc.returncode == 2 and "shipped with the remote_kernel package" in proc.stderr, proc.stderr
    assert (shipped / "kernel.json").is_file()
    _run([rk, "uninstall", "remote-lua"], 120, env=env, cwd=root)
    assert not (tmp_path / "data" / "kernels" / "remote-lua").exists()


def test_jupyter_labextension_list_shows_the_drawing_renderer(venv):
    root, env, _ = venv
    proc = _run([str(root / "bin" / "jupyter"), "labextension", "list"], 180, env=env, cwd=root)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    line = next((l for l in text.splitlines() if "@remote-kernel/drawing" in l), None)
    assert line is not None, text
    assert "enabled" in line and "OK" in line, line
