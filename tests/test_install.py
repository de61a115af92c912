"""remote-kernel install / list / uninstall through the real CLI, into temporary locations.

Most tests run the CLI on a throwaway virtual environment's interpreter (``env_python``): a
real venv (its own ``sys.prefix``, so ``--sys-prefix`` and the default location land in a
temporary folder) that imports this tree's remote_kernel and the test environment's
dependencies through a ``.pth`` file.  Jupyter's own view is checked with its real
``kernelspec list`` run on the same interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import kernel_support as ks
from remote_kernel import install as installer

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None, python=sys.executable):
    return subprocess.run([str(python), "-m", "remote_kernel", *args], capture_output=True,
                          text=True, env=env, timeout=60, cwd=REPO)


def jupyter_kernelspecs(python, env) -> dict:
    """``jupyter kernelspec list --json`` as that interpreter's Jupyter sees it."""
    proc = subprocess.run([str(python), "-m", "jupyter_client.kernelspecapp", "list", "--json"],
                          capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["kernelspecs"]


@pytest.fixture
def jupyter_env(tmp_path):
    """An environment whose Jupyter sees the temporary prefix's kernelspecs first, with its own
    home, user data and config directories."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "CONDA"))}
    (tmp_path / "home").mkdir()
    env["HOME"] = str(tmp_path / "home")
    env["JUPYTER_PATH"] = str(tmp_path / "prefix" / "share" / "jupyter")
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "data")
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["BACKEND_SECRET_KEY"] = "s3cr3t-never-written"
    return env


@pytest.fixture
def env_python(tmp_path) -> Path:
    """A fresh virtual environment's python that runs this tree's remote_kernel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    # this tree first, then the dependencies of the test environment
    (site / "remote_kernel_tests.pth").write_text(f"{REPO}\n{sysconfig.get_paths()['purelib']}\n")
    return venv / "bin" / "python"


def env_kernels(python: Path) -> Path:
    return python.parent.parent / "share" / "jupyter" / "kernels"


def ship_remote_python(python: Path) -> Path:
    """What the wheel's shared-data does on ``pip install``: the remote-python template as is,
    in the environment's share/jupyter/kernels."""
    dest = env_kernels(python) / "remote-python"
    shutil.copytree(installer.templates_dir() / "remote-python", dest)
    return dest


def user_kernels(env) -> Path:
    return Path(env["JUPYTER_DATA_DIR"]) / "kernels"


def spec_of(tmp_path, name):
    return json.loads((tmp_path / "prefix" / "share" / "jupyter" / "kernels" / name / "kernel.json").read_text())


def test_every_template_is_complete():
    names = installer.template_names()
    assert {"remote-python", "remote-r", "remote-julia", "remote-lua", "remote-nodejs", "remote-c", "remote-cpp"} <= set(names)
    for name in names:
        folder = installer.templates_dir() / name
        spec = json.loads((folder / "kernel.json").read_text())
        assert spec["interrupt_mode"] == "message"
        assert spec["metadata"]["debugger"] is False
        assert spec["language"]
        assert "{connection_file}" in spec["argv"]
        images = [a for a in spec["argv"] if a.startswith("--RemoteKernel.image=")]
        if name == "remote-python":
            # no image of its own: c.RemoteKernel.image in remote_kernel_config.py applies
            assert images == [] and spec["metadata"]["remote_kernel"]["image"] is None
        else:
            assert images == [f"--RemoteKernel.image={spec['metadata']['remote_kernel']['image']}"]
        assert (folder / "logo-64x64.png").is_file() and (folder / "logo-32x32.png").is_file()
        assert "KEY" not in json.dumps(spec).upper()


def test_install_list_uninstall_roundtrip(tmp_path, jupyter_env, env_python):
    prefix = str(tmp_path / "prefix")
    r = run_cli("install", "--prefix", prefix, "--name", "gpu-py", "--display-name", "GPU Python",
                "--image", "python:3.11", "--endpoint", "https://api.example.org", env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    spec = spec_of(tmp_path, "gpu-py")
    assert spec["display_name"] == "GPU Python"
    assert "--RemoteKernel.image=python:3.11" in spec["argv"]
    assert "--APIConfig.endpoint=https://api.example.org" in spec["argv"]
    assert spec["language"] == "python"
    assert "s3cr3t-never-written" not in json.dumps(spec)

    listing = run_cli("list", env=jupyter_env, python=env_python)
    assert listing.returncode == 0
    assert "gpu-py" in listing.stdout and "python:3.11" in listing.stdout
    assert "https://api.example.org" in listing.stdout

    assert "gpu-py" in jupyter_kernelspecs(env_python, jupyter_env)

    r = run_cli("uninstall", "gpu-py", env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "gpu-py").exists()


def test_installed_specs_run_the_interpreter_they_were_installed_from(tmp_path, jupyter_env, env_python):
    """Not ``python``: Jupyter would run its own interpreter, which (a JupyterLab of another
    environment) may not have remote_kernel."""
    r = run_cli("install", "--prefix", str(tmp_path / "prefix"), "--all", env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    for name in installer.template_names():
        argv = spec_of(tmp_path, name)["argv"]
        assert argv[0] == str(env_python) and os.path.isabs(argv[0]), argv
        assert argv[1:3] == ["-m", "remote_kernel.kernel"]


def test_install_all_templates_and_image_picks_language(tmp_path, jupyter_env, env_python):
    prefix = str(tmp_path / "prefix")
    r = run_cli("install", "--prefix", prefix, "--all", env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    for name in installer.template_names():
        assert spec_of(tmp_path, name)["metadata"]["remote_kernel"]
    r = run_cli("install", "--prefix", prefix, "--name", "myr", "--image", "lablup/r-base:4.3",
                env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert spec_of(tmp_path, "myr")["language"] == "r"


def test_remote_python_takes_the_image_from_the_config_file(tmp_path, jupyter_env, env_python):
    """README: ``c.RemoteKernel.image`` in remote_kernel_config.py chooses remote-python's
    image; the installed spec's argv names none that would win over it."""
    r = run_cli("install", "--prefix", str(tmp_path / "prefix"), env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert not any(a.startswith("--RemoteKernel.image") for a in spec_of(tmp_path, "remote-python")["argv"])
    config = tmp_path / "config"
    config.mkdir()
    (config / "remote_kernel_config.py").write_text('c.RemoteKernel.image = "python:3.11"\n')

    from jupyter_client.manager import KernelManager

    notebook_dir = tmp_path / "notebook"
    notebook_dir.mkdir()
    with ks.on_jupyter_path(tmp_path / "prefix" / "share" / "jupyter"):
        km = KernelManager(kernel_name="remote-python")
        assert km.kernel_spec.argv[0] == str(env_python)
        env = {k: v for k, v in jupyter_env.items() if not k.startswith("BACKEND_")}  # the embedded server
        km.start_kernel(env=env, cwd=str(notebook_dir))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply, outputs, _ = ks.execute(kc, "print(6 * 7)", timeout=120)
        assert reply["status"] == "ok" and ks.stdout_of(outputs).endswith("42\n"), (reply, outputs)
        reply, outputs, _ = ks.execute(kc, "%remote info", timeout=60)
        assert reply["status"] == "ok", reply
        assert "image: python:3.11\n" in ks.stdout_of(outputs), outputs
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()


# ---- two specs of one name: install refuses, list shows both, uninstall removes its own -----


def test_user_install_beside_the_environments_shipped_copy(tmp_path, jupyter_env, env_python):
    """The wheel ships remote-python into the environment; in a virtual environment Jupyter
    prefers the environment's directory, so a --user copy would never be used."""
    env = dict(jupyter_env)
    env.pop("JUPYTER_PATH")
    shipped = ship_remote_python(env_python)
    user_copy = user_kernels(env) / "remote-python"

    r = run_cli("install", "--user", env=env, python=env_python)
    assert r.returncode == 2 and not user_copy.exists()
    assert str(shipped) in r.stderr and str(user_copy) in r.stderr, r.stderr
    assert f"Jupyter would keep using {shipped}" in r.stderr and "--force" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

    # --all installs the rest and says why remote-python is not among them
    r = run_cli("install", "--user", "--all", env=env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert "skipped remote-python" in r.stderr and str(shipped) in r.stderr, r.stderr
    assert (user_kernels(env) / "remote-lua" / "kernel.json").is_file() and not user_copy.exists()

    # a deliberate second copy: said which one wins
    r = run_cli("install", "--user", "--force", env=env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert f"Jupyter uses {shipped}; this one is shadowed" in r.stdout, r.stdout
    assert Path(jupyter_kernelspecs(env_python, env)["remote-python"]["resource_dir"]) == shipped

    rows = [l.split() for l in run_cli("list", env=env, python=env_python).stdout.splitlines()
            if l.startswith("remote-python ")]
    assert [(r[-1], r[1]) for r in rows] == [(str(shipped), "yes"), (str(user_copy), "no,")], rows

    # uninstall removes the copy install wrote, not the one Jupyter finds first
    r = run_cli("uninstall", "remote-python", env=env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert not user_copy.exists() and (shipped / "kernel.json").is_file()
    r = run_cli("uninstall", "remote-python", env=env, python=env_python)
    assert r.returncode == 2 and (shipped / "kernel.json").is_file()
    assert "shipped with the remote_kernel package" in r.stderr and "--sys-prefix" in r.stderr, r.stderr


def test_environment_install_that_would_shadow_a_user_copy(tmp_path, jupyter_env, env_python):
    env = dict(jupyter_env)
    env.pop("JUPYTER_PATH")
    r = run_cli("install", "--user", "--name", "py", env=env, python=env_python)
    assert r.returncode == 0, r.stderr
    user_copy, env_copy = user_kernels(env) / "py", env_kernels(env_python) / "py"
    r = run_cli("install", "--sys-prefix", "--name", "py", env=env, python=env_python)
    assert r.returncode == 2 and not env_copy.exists()
    assert str(user_copy) in r.stderr and f"the new one would shadow it: Jupyter would use {env_copy}" in r.stderr

    r = run_cli("install", "--sys-prefix", "--name", "py", "--force", env=env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert f"Jupyter uses this one; it shadows {user_copy}" in r.stdout
    # reinstalling in place is no conflict
    r = run_cli("install", "--sys-prefix", "--name", "py", "--image", "python:3.12", env=env, python=env_python)
    assert r.returncode == 0, r.stderr

    # two copies written by install: uninstall asks which, and removes only the one named
    r = run_cli("uninstall", "py", env=env, python=env_python)
    assert r.returncode == 2 and user_copy.exists() and env_copy.exists()
    assert f"{env_copy} (--sys-prefix)" in r.stderr and f"{user_copy} (--user)" in r.stderr, r.stderr
    r = run_cli("uninstall", "py", "--user", env=env, python=env_python)
    assert r.returncode == 0 and not user_copy.exists() and env_copy.exists(), r.stderr
    r = run_cli("uninstall", "py", "--user", env=env, python=env_python)
    assert r.returncode == 2 and f"it is installed in {env_copy}" in r.stderr, r.stderr
    r = run_cli("uninstall", "py", env=env, python=env_python)
    assert r.returncode == 0 and not env_copy.exists(), r.stderr


def test_a_foreign_spec_in_the_way_needs_force(tmp_path, jupyter_env, env_python):
    foreign = tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "theirs"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel", "-f", "{connection_file}"], "display_name": "x", "language": "python"}))
    r = run_cli("install", "--prefix", str(tmp_path / "prefix"), "--name", "theirs", env=jupyter_env, python=env_python)
    assert r.returncode == 2 and "did not install" in r.stderr and str(foreign) in r.stderr
    assert json.loads((foreign / "kernel.json").read_text())["display_name"] == "x"


# ---- where install writes by default, and what a location it cannot write says ---------------


def test_default_location_in_an_environment_is_the_environment(tmp_path, jupyter_env, env_python):
    r = run_cli("install", "--name", "here", env=jupyter_env, python=env_python)
    assert r.returncode == 0, r.stderr
    assert (env_kernels(env_python) / "here" / "kernel.json").is_file()
    assert "(--sys-prefix, the default here)" in r.stdout
    assert "Without a location flag: --sys-prefix" in " ".join(
        run_cli("install", "--help", env=jupyter_env, python=env_python).stdout.split())


def test_default_location_outside_an_environment_is_the_user(tmp_path, jupyter_env):
    base = Path(getattr(sys, "_base_executable", "") or "")
    if sys.prefix == sys.base_prefix or not base.is_file() or (Path(sys.base_prefix) / "conda-meta").is_dir():
        pytest.skip("needs the plain interpreter this test environment was made from")
    env = dict(jupyter_env, PYTHONPATH=os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]))
    r = run_cli("install", "--name", "mine", env=env, python=base)
    assert r.returncode == 0, r.stderr
    assert (user_kernels(env) / "mine" / "kernel.json").is_file()
    assert "(--user, the default here)" in r.stdout
    assert json.loads((user_kernels(env) / "mine" / "kernel.json").read_text())["argv"][0] == str(base)


def _unwritable_dir(tmp_path) -> Path:
    """A directory this process may not create anything in (root ignores modes: /sys)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    try:
        os.makedirs("/sys/remote-kernel-probe")
    except PermissionError:
        return Path("/sys")
    except OSError:
        pass
    pytest.skip("no directory here refuses root")


def test_an_unwritable_location_is_a_message_not_a_traceback(tmp_path, jupyter_env, env_python):
    locked = _unwritable_dir(tmp_path)
    prefix = locked / "rk-prefix"
    r = run_cli("install", "--prefix", str(prefix), env=jupyter_env, python=env_python)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("remote-kernel install: cannot install the kernelspec into "
                               f"{prefix / 'share' / 'jupyter' / 'kernels' / 'remote-python'}"), r.stderr
    assert "--user" in r.stderr and "--sys-prefix" in r.stderr and "--prefix DIR" in r.stderr


# ---- what is left alone ---------------------------------------------------------------------


def test_uninstall_leaves_foreign_specs_alone(tmp_path, jupyter_env, env_python):
    foreign = tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "remote-python-theirs"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel", "-f", "{connection_file}"], "display_name": "x", "language": "python"}))
    r = run_cli("uninstall", "remote-python-theirs", env=jupyter_env, python=env_python)
    assert r.returncode == 2
    assert "not installed by remote-kernel" in r.stderr
    assert foreign.exists()
    r = run_cli("uninstall", "remote-python-theirs", "--prefix", str(tmp_path / "prefix"), env=jupyter_env, python=env_python)
    assert r.returncode == 2 and "not installed by remote-kernel" in r.stderr and foreign.exists()
    r = run_cli("uninstall", "does-not-exist", env=jupyter_env, python=env_python)
    assert r.returncode == 2 and "no kernelspec named" in r.stderr


def test_bad_names_are_refused(tmp_path, jupyter_env):
    r = run_cli("install", "--prefix", str(tmp_path / "prefix"), "--name", "bad name!", env=jupyter_env)
    assert r.returncode == 2 and "may only hold" in r.stderr


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for sub in ("install", "list", "uninstall"):
        assert sub in r.stdout
