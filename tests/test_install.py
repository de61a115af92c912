"""remote-kernel install / list / uninstall into temporary prefixes, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from remote_kernel import install as installer


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "remote_kernel", *args], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.fixture
def jupyter_env(tmp_path):
    """An environment whose Jupyter sees only the temporary prefix's kernelspecs."""
    env = dict(os.environ)
    env["JUPYTER_PATH"] = str(tmp_path / "prefix" / "share" / "jupyter")
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "data")
    env["BACKEND_SECRET_KEY"] = "s3cr3t-never-written"
    return env


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
        assert any(a.startswith("--RemoteKernel.image=") for a in spec["argv"])
        assert (folder / "logo-64x64.png").is_file() and (folder / "logo-32x32.png").is_file()
        assert "KEY" not in json.dumps(spec).upper()


def test_install_list_uninstall_roundtrip(tmp_path, jupyter_env):
    prefix = str(tmp_path / "prefix")
    r = run_cli("install", "--prefix", prefix, "--name", "gpu-py", "--display-name", "GPU Python",
                "--image", "python:3.11", "--endpoint", "https://api.example.org", env=jupyter_env)
    assert r.returncode == 0, r.stderr
    spec = spec_of(tmp_path, "gpu-py")
    assert spec["display_name"] == "GPU Python"
    assert "--RemoteKernel.image=python:3.11" in spec["argv"]
    assert "--APIConfig.endpoint=https://api.example.org" in spec["argv"]
    assert spec["language"] == "python"
    assert "s3cr3t-never-written" not in json.dumps(spec)

    listing = run_cli("list", env=jupyter_env)
    assert listing.returncode == 0
    assert "gpu-py" in listing.stdout and "python:3.11" in listing.stdout
    assert "https://api.example.org" in listing.stdout

    # jupyter itself finds it
    ks = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
                        capture_output=True, text=True, env=jupyter_env, timeout=60)
    assert "gpu-py" in json.loads(ks.stdout)["kernelspecs"]

    r = run_cli("uninstall", "gpu-py", env=jupyter_env)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "gpu-py").exists()


def test_install_all_templates_and_image_picks_language(tmp_path, jupyter_env):
    prefix = str(tmp_path / "prefix")
    r = run_cli("install", "--prefix", prefix, "--all", env=jupyter_env)
    assert r.returncode == 0, r.stderr
    for name in installer.template_names():
        assert spec_of(tmp_path, name)["metadata"]["remote_kernel"]
    r = run_cli("install", "--prefix", prefix, "--name", "myr", "--image", "lablup/r-base:4.3", env=jupyter_env)
    assert r.returncode == 0, r.stderr
    assert spec_of(tmp_path, "myr")["language"] == "r"


def test_uninstall_leaves_foreign_specs_alone(tmp_path, jupyter_env):
    foreign = tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "remote-python-theirs"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel", "-f", "{connection_file}"], "display_name": "x", "language": "python"}))
    r = run_cli("uninstall", "remote-python-theirs", env=jupyter_env)
    assert r.returncode == 2
    assert "not installed by remote-kernel" in r.stderr
    assert foreign.exists()
    r = run_cli("uninstall", "does-not-exist", env=jupyter_env)
    assert r.returncode == 2 and "no kernelspec named" in r.stderr


def test_bad_names_are_refused(tmp_path, jupyter_env):
    r = run_cli("install", "--prefix", str(tmp_path / "prefix"), "--name", "bad name!", env=jupyter_env)
    assert r.returncode == 2 and "may only hold" in r.stderr


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for sub in ("install", "list", "uninstall"):
        assert sub in r.stdout
