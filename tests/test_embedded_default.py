"""The embedded default: a bridge kernel with no endpoint (or the endpoint ``local``) runs its
cells on a private embedded server it starts for itself, in its own working directory, and
leaves no process behind — after a clean shutdown and after being SIGKILLed.  A configured
endpoint without keys is a clear error, never a silent fallback to local."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from jupyter_client.manager import KernelManager
from traitlets.config import Config, Configurable

import kernel_support as ks
from _procs import live, survivors
from remote_kernel.kernel import embedded
from remote_kernel.kernel.remote_session import MissingKeys, load_config

NO_ENDPOINT = "rk-embedded-default"
LOCAL = "rk-embedded-local"
NO_KEYS = "rk-endpoint-no-keys"

NOTE = "cells run on this machine, in "


def notes_of(outputs: list[dict]) -> str:
    """The information displays of a cell (the start note is one: not stderr, not stdout)."""
    return "".join(o["data"].get("text/plain", "") for o in outputs if o["msg_type"] == "display_data")


# ---- pure: the decision and the server's command line ---------------------------------------------


def _Parent(**api) -> Configurable:
    """What the kernel is to its APIConfig: a Configurable holding the kernelspec's argv config."""
    return Configurable(config=Config({"APIConfig": api}))


def test_no_endpoint_or_local_means_embedded():
    none = (None, "no remote endpoint is configured")
    assert load_config(None, {})[1:] == none
    # the reason names where 'local' came from (the banner and the first cell's note say it)
    assert load_config(None, {"BACKEND_ENDPOINT": "local"})[1:] == (None, "the endpoint is 'local' (BACKEND_ENDPOINT)")
    assert load_config(None, {"SORNA_ENDPOINT": " LOCAL "})[1:] == (None, "the endpoint is 'local' (SORNA_ENDPOINT)")
    # keys in the environment do not turn "no endpoint" into an error, nor reach the server
    assert load_config(None, {"BACKEND_ACCESS_KEY": "a", "BACKEND_SECRET_KEY": "b"})[1:] == none
    # the kernelspec's --APIConfig.endpoint=local wins over the environment
    env = {"BACKEND_ENDPOINT": "http://example.invalid", "BACKEND_ACCESS_KEY": "a", "BACKEND_SECRET_KEY": "b"}
    error, reason = load_config(_Parent(endpoint=["local"]), env)[1:]
    assert error is None and reason.startswith("the endpoint is 'local' (")


def test_configured_endpoint_is_used_as_is_and_needs_both_keys():
    env = {"BACKEND_ENDPOINT": "http://example.invalid:8090"}
    config, error, is_embedded = load_config(None, env)
    assert is_embedded is None and isinstance(error, MissingKeys)
    assert "BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY are not set" in str(error)
    assert "http://example.invalid:8090" in str(error)
    _, error, _ = load_config(None, {**env, "BACKEND_ACCESS_KEY": "AK"})
    assert "BACKEND_SECRET_KEY is not set" in str(error) and "BACKEND_ACCESS_KEY is" not in str(error)
    secret = "s3cr3t-value-never-shown"
    _, error, _ = load_config(None, {**env, "BACKEND_SECRET_KEY": secret})
    assert "BACKEND_ACCESS_KEY is not set" in str(error) and secret not in str(error)
    config, error, is_embedded = load_config(None, {**env, "BACKEND_ACCESS_KEY": "AK", "BACKEND_SECRET_KEY": secret})
    assert (error, is_embedded) == (None, None)
    assert config.endpoint == ["http://example.invalid:8090"] and config.secret_key == secret
    # argv endpoint + env keys
    config, error, _ = load_config(_Parent(endpoint=["http://h:1"]), {"BACKEND_ACCESS_KEY": "AK", "BACKEND_SECRET_KEY": "s"})
    assert error is None and config.endpoint == ["http://h:1"]
    # a malformed endpoint is a configuration error, not a fallback either
    _, error, is_embedded = load_config(None, {"BACKEND_ENDPOINT": "ftp://x"})
    assert error is not None and not is_embedded and "http://" in str(error)


def test_server_command_carries_no_secret_and_environ_drops_other_endpoints():
    access, secret = embedded.fresh_keys()
    assert embedded.fresh_keys() != (access, secret)
    argv = embedded.server_command("/some/dir", 1234)
    assert secret not in " ".join(argv) and access not in " ".join(argv)
    assert argv[argv.index("--session-cwd") + 1] == "/some/dir"
    assert argv[argv.index("--parent-pid") + 1] == "1234"
    assert argv[argv.index("--port") + 1] == "0"
    env = embedded.server_environ({"PATH": "/bin", "BACKEND_ENDPOINT": "http://x", "SORNA_SECRET_KEY": "old"},
                                  access, secret)
    assert env["BACKEND_ACCESS_KEY"] == access and env["BACKEND_SECRET_KEY"] == secret
    assert "BACKEND_ENDPOINT" not in env and "SORNA_SECRET_KEY" not in env and env["PATH"] == "/bin"
    assert secret not in repr(embedded.EmbeddedServer(cwd="/tmp", parent_pid=1))


# ---- real kernels through jupyter_client ----------------------------------------------------------


@pytest.fixture(scope="module")
def kernelspec_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kernelspecs")
    ks.write_kernelspec(root, name=NO_ENDPOINT)
    ks.write_kernelspec(root, name=LOCAL, endpoint="local")
    # an endpoint nobody listens on: the error must come before any connection attempt
    ks.write_kernelspec(root, name=NO_KEYS, endpoint="http://127.0.0.1:9")
    with ks.on_jupyter_path(root):
        yield root


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}


@contextmanager
def kernel_in(cwd: Path, name: str):
    """A bridge kernel started in ``cwd`` (as Jupyter starts it in the notebook's folder)."""
    km = KernelManager(kernel_name=name)
    km.start_kernel(env=clean_env(), cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
        km.cleanup_resources()


def kernel_process(km) -> psutil.Process:
    return psutil.Process(km.provisioner.process.pid)


def server_pid(kc) -> int:
    reply, outputs, _ = ks.execute(kc, "%remote info")
    assert reply["status"] == "ok", reply
    return int(re.search(r"^embedded server pid: (\d+)$", ks.stdout_of(outputs), re.M).group(1))


def assert_all_gone(procs: list[psutil.Process], timeout: float) -> None:
    left = survivors(procs, timeout)
    assert not left, f"processes left behind: {left}"


@pytest.mark.slow
def test_kernel_without_configuration_runs_locally_and_cleans_up(kernelspec_root, tmp_path):
    workdir = tmp_path / "notebook folder"
    workdir.mkdir()
    with kernel_in(workdir, NO_ENDPOINT) as (km, kc):
        banner = kc.kernel_info(reply=True, timeout=10)["content"]["banner"]
        assert "no remote endpoint is configured" in banner and "private embedded server" in banner
        assert str(workdir) in banner

        reply, outputs, _ = ks.execute(kc, "import os; print(os.getcwd())", timeout=90)
        assert reply["status"] == "ok", reply
        assert ks.stdout_of(outputs).strip() == str(workdir)
        # (a slow start may add a progress line before it)
        [note] = [o for o in outputs if o["msg_type"] == "display_data" and NOTE in o["data"]["text/plain"]]
        assert note["data"]["text/plain"] == f"remote_kernel: no remote endpoint is configured; {NOTE}{workdir}"
        assert not ks.stderr_of(outputs)  # information, not painted as an error

        reply, outputs, _ = ks.execute(kc, "open('written.txt', 'w').write('from the cell'); print('ok')")
        assert reply["status"] == "ok" and ks.stdout_of(outputs) == "ok\n", (reply, outputs)
        assert NOTE not in notes_of(outputs)  # once per kernel
        assert (workdir / "written.txt").read_text() == "from the cell"

        kernel = kernel_process(km)
        pid = server_pid(kc)
        server = psutil.Process(pid)
        assert server.ppid() == kernel.pid and "serve" in server.cmdline()
        secret = server.environ()["BACKEND_SECRET_KEY"]
        assert secret and secret not in " ".join(server.cmdline())  # never on argv (ps shows it)
        everything = kernel.children(recursive=True)
        assert len(everything) >= 2  # the server and its inner kernel

        km.shutdown_kernel(now=False)
        assert_all_gone([kernel, *everything], timeout=15)


@pytest.mark.slow
def test_local_endpoint_works_and_server_exits_when_the_kernel_is_killed(kernelspec_root, tmp_path):
    with kernel_in(tmp_path, LOCAL) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "import os; print(os.getcwd())", timeout=90)
        assert reply["status"] == "ok", reply
        assert ks.stdout_of(outputs).strip() == str(tmp_path)
        assert "the endpoint is 'local'" in notes_of(outputs) and NOTE in notes_of(outputs)

        kernel = kernel_process(km)
        server = psutil.Process(server_pid(kc))
        inner = server.children(recursive=True)
        os.kill(kernel.pid, signal.SIGKILL)
        kernel.wait(10)
        # the server notices that its parent is gone (no shutdown request ever came)
        assert_all_gone([server], timeout=5)
        assert_all_gone(inner, timeout=10)


@pytest.mark.slow
def test_endpoint_without_keys_is_a_clear_error_not_a_local_fallback(kernelspec_root, tmp_path):
    with kernel_in(tmp_path, NO_KEYS) as (km, kc):
        banner = kc.kernel_info(reply=True, timeout=10)["content"]["banner"]
        assert "http://127.0.0.1:9" in banner and "embedded" not in banner
        reply, outputs, _ = ks.execute(kc, "print('must not run')", timeout=30)
        assert reply["status"] == "error"
        assert "BACKEND_ACCESS_KEY" in reply["evalue"] and "BACKEND_SECRET_KEY" in reply["evalue"]
        assert "http://127.0.0.1:9" in reply["evalue"]
        assert [o for o in outputs if o["msg_type"] == "error"], outputs
        assert "must not run" not in ks.stdout_of(outputs)
        servers = [p for p in kernel_process(km).children(recursive=True) if "serve" in p.cmdline()]
        assert servers == []


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX process handling")


SHADOWS = 'raise ImportError("the folder\'s own {name}.py was imported by the kernel machinery")\n'


@pytest.mark.slow
def test_a_folder_whose_files_shadow_stdlib_modules_still_works(kernelspec_root, tmp_path):
    """Python puts the working directory first on sys.path for ``python -m``: the bridge, the
    private server and the session kernel all start in the notebook's folder, and must not
    import its json.py or queue.py in place of the standard library's."""
    for name in ("json", "queue", "signal", "secrets", "hmac", "base64"):
        (tmp_path / f"{name}.py").write_text(SHADOWS.format(name=name))
    (tmp_path / "helper.py").write_text("VALUE = 'from the notebook folder'\n")
    with kernel_in(tmp_path, NO_ENDPOINT) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "import helper; print(helper.VALUE)", timeout=90)
        assert reply["status"] == "ok", reply
        # the cell's own imports still see the folder, as in any Jupyter kernel
        assert ks.stdout_of(outputs) == "from the notebook folder\n"


@pytest.mark.slow
def test_a_killed_private_server_is_replaced_for_the_next_cell_and_nothing_is_left(kernelspec_root, tmp_path):
    """An out-of-memory kill of the private server: that cell ends with a clear error at once,
    the next one runs on a new server with the lost-state note, and no process is left over."""
    with kernel_in(tmp_path, NO_ENDPOINT) as (km, kc):
        reply, _, _ = ks.execute(kc, "x = 1", timeout=90)
        assert reply["status"] == "ok", reply
        kernel = kernel_process(km)
        old_pid = server_pid(kc)
        old_family = [psutil.Process(old_pid), *psutil.Process(old_pid).children(recursive=True)]
        count_before = len(live(kernel.children(recursive=True)))

        msg_id = kc.execute("import time; print('started', flush=True); time.sleep(120)")
        ks.wait_for_output(kc, msg_id, "started")
        os.kill(old_pid, signal.SIGKILL)
        reply, outputs, _ = ks.collect(kc, msg_id, timeout=30)
        assert reply is not None and reply["status"] == "error", (reply, outputs)
        assert reply["ename"] == "PrivateServerStopped"
        assert reply["evalue"].startswith("the private embedded server on this machine was killed by SIGKILL; "
                                          "the next cell starts a new one")
        assert old_pid not in [child.pid for child in kernel.children()]  # reaped: no zombie of the kernel

        reply, outputs, _ = ks.execute(kc, "print('x' in dir())", timeout=90)
        assert reply["status"] == "ok", (reply, outputs)
        assert ks.stdout_of(outputs) == "False\n"
        assert "the private embedded server was killed by SIGKILL; a new remote session" in ks.stderr_of(outputs)
        assert "variables, imports) was lost; files stay" in ks.stderr_of(outputs)
        assert server_pid(kc) != old_pid
        assert_all_gone(old_family, timeout=15)  # the dead server's inner kernel ends too
        assert len(live(kernel.children(recursive=True))) == count_before


@pytest.mark.slow
def test_ten_kernel_runs_leave_nothing_in_the_temporary_directory(kernelspec_root, tmp_path):
    """Each kernel with no configuration starts a private server; none leaves a folder behind."""
    temp = Path(tempfile.mkdtemp(prefix="rk-t-", dir="/tmp"))  # short: socket names live there
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = dict(clean_env(), TMPDIR=str(temp))
    for _ in range(10):
        km = KernelManager(kernel_name=NO_ENDPOINT)
        km.start_kernel(env=env, cwd=str(workdir))
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            reply, _, _ = ks.execute(kc, "print('hi')", timeout=90)
            assert reply["status"] == "ok", reply
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
            km.cleanup_resources()
    assert sorted(p.name for p in temp.iterdir()) == []  # no rk-server-* folder, nor anything else
    shutil.rmtree(temp)


@pytest.mark.slow
def test_a_long_temporary_directory_path_does_not_stop_kernels_from_starting(kernelspec_root, tmp_path):
    """The inner kernels' sockets are named by path, which may be at most ~107 bytes long."""
    temp = tmp_path / ("a-rather-long-folder-name-" * 4)
    temp.mkdir()
    km = KernelManager(kernel_name=NO_ENDPOINT)
    km.start_kernel(env=dict(clean_env(), TMPDIR=str(temp)), cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply, outputs, _ = ks.execute(kc, "print('started')", timeout=90)
        assert reply["status"] == "ok", (reply, outputs)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
