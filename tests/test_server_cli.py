"""``remote-kernel serve`` as a process: keys (arguments, environment, generated 0600 file),
the loopback rule, quotas, idle reaping, and a SIGTERM that leaves no kernel behind."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import requests

from _procs import survivors
import kernel_support as ks
from remote_kernel.client import errors
from server_fixture import start_server

SERVE = [sys.executable, "-m", "remote_kernel", "serve"]


def test_generated_keys_file(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    for var in ("BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"):
        env.pop(var, None)
    keys_file = tmp_path / "data" / "remote_kernel" / "server_keys.json"
    seen = []
    for _ in range(2):
        proc = subprocess.Popen(SERVE + ["--port", "0", "--root", str(tmp_path / "root")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().strip()
            key_line = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:") and requests.get(url + "/", timeout=10).ok
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0
        import json
        data = json.loads(keys_file.read_text())
        assert key_line == "access key: " + data["access_key"]
        assert data["secret_key"] not in out + err + key_line
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        seen.append(data["access_key"])
    assert seen[0] == seen[1]  # kept, not regenerated


def test_refuses_non_loopback_without_keys(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    for var in ("BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"):
        env.pop(var, None)
    proc = subprocess.run(SERVE + ["--host", "0.0.0.0", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "non-loopback" in proc.stderr and proc.stdout == ""


def test_environment_keys_never_reach_sessions(tmp_path):
    access, secret = "AKENV" + uuid.uuid4().hex[:8].upper(), "env-secret-" + uuid.uuid4().hex
    env = dict(os.environ, BACKEND_ACCESS_KEY=access, BACKEND_SECRET_KEY=secret)
    proc = subprocess.Popen(SERVE + ["--port", "0", "--root", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "access key: " + access
        from remote_kernel.client import APIConfig, Client
        with Client(APIConfig(endpoint=[url], access_key=access, secret_key=secret)) as client:
            client.create_session("python", name="envcheck")
            result = client.execute("envcheck", "query",
                                    "import os; print(os.environ.get('BACKEND_SECRET_KEY'))")
            assert result["console"] == [["stdout", "None\n"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert secret not in out + err


@pytest.mark.slow  # waits out an idle timeout
def test_quota_idle_timeout_and_clean_shutdown(tmp_path):
    # no spare kernel: this test counts kernel processes
    srv = start_server(str(tmp_path), "--max-sessions", "2", "--idle-timeout", "3", "--warm-kernels", "0")
    try:
        client = srv.client()
        client.create_session("python", name="quota-1")
        client.create_session("python", name="quota-2")
        with pytest.raises(errors.QuotaExceeded):
            client.create_session("python", name="quota-3")
        kernels = psutil.Process(srv.pid).children(recursive=True)
        assert len(kernels) >= 2
        # forgotten sessions are reaped: their kernels stop and their directories go (a
        # bounded poll of the directory: the reaper sends no event)
        deadline = time.monotonic() + 20
        while os.path.exists(tmp_path / "quota-1") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(tmp_path / "quota-1")
        with pytest.raises(errors.SessionNotFound):
            client.get_session("quota-1")
        assert not survivors(kernels, timeout=10)
        client.create_session("python", name="quota-3")  # room again
        client.create_session("python", name="quota-4")
        kernels = psutil.Process(srv.pid).children(recursive=True)
    finally:
        code = srv.stop()
    assert code == 0
    left = survivors(kernels, timeout=10)
    assert not left, f"kernels survived SIGTERM: {left}"
    assert not os.path.exists(tmp_path / "quota-3")


def test_batch_input_free_interrupt(tmp_path):
    """An interrupt reaches a batch subprocess too."""
    srv = start_server(str(tmp_path))
    try:
        client = srv.client()
        client.create_session("python", name="batchint")
        import threading
        box, started = {"events": []}, threading.Event()

        def go():
            for event in client.run("batchint", "", mode="batch",
                                    options={"exec": "echo start; sleep 60; echo never"}):
                box["events"].append(event)
                if "start" in str(getattr(event, "data", "")):
                    started.set()

        t = threading.Thread(target=go, daemon=True)
        t.start()
        assert started.wait(30), box["events"]
        client.interrupt("batchint")
        t.join(30)  # well before the 60 s sleep ends
        assert not t.is_alive()
        done = box["events"][-1]
        assert done.exit_code == 130
        assert "never" not in "".join(str(e) for e in box["events"])
    finally:
        assert srv.stop() == 0


def test_output_bound_with_truncation_notice(tmp_path):
    """A run whose output is not fetched keeps at most --max-run-buffer bytes: its start, one
    notice saying how much was dropped (not "0 MiB" for a buffer under 1 MiB), and its end."""
    srv = start_server(str(tmp_path / "root"), "--max-run-buffer", "200000")
    gate = tmp_path / "gate"
    try:
        client = srv.client()
        client.create_session("python", name="flood")
        code = ("print('start', flush=True)\n" + ks.gate_code(gate)
                + "import sys\nfor i in range(3000):\n    sys.stdout.write('y' * 999 + '\\n')\nprint('END')")
        result = client.execute("flood", "query", code, None, {})
        while not any(k == "stdout" and "start" in d for k, d in result["console"]):
            assert result["status"] == "continued", result
            result = client.execute("flood", "continue", "", result["runId"])
        # From here on nothing is acknowledged: every poll carries this cursor, so the server
        # keeps (and bounds) all that comes after it, however the polls and the output
        # interleave; the last answer holds all of that.
        gate.touch()
        last = result
        while last["status"] != "finished":
            last = client.execute("flood", "continue", "", result["runId"], {"cursor": result["cursor"]})
        out = "".join(d for k, d in last["console"] if k == "stdout")
        notices = [d for k, d in last["console"] if k == "stderr"]
        assert len(notices) == 1 and "truncated" in notices[0] and "KiB" in notices[0], notices
        assert "0 MiB" not in notices[0]
        assert out.startswith("y" * 999 + "\n") and out.endswith("y\nEND\n") and len(out) <= 200_000
        assert client.execute("flood", "query", "print('ok')")["console"] == [["stdout", "ok\n"]]
    finally:
        assert srv.stop() == 0


def test_a_broken_dependency_is_an_error_naming_it_not_a_missing_subcommand(tmp_path):
    """``serve`` needs tornado: when it cannot be imported, using ``serve`` (even ``--help``) is
    an error that names it, and the command list shows why ``serve`` is unavailable."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "tornado.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tornado'\", name='tornado')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "remote_kernel", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    for args in (["serve", "--help"], ["serve", "--port", "0"]):
        proc = cli(*args)
        assert proc.returncode != 0, (args, proc.stdout, proc.stderr)
        assert "tornado" in proc.stderr and "remote_kernel.server.app" in proc.stderr, proc.stderr
        assert "invalid choice" not in proc.stderr
    listing = cli("--help")
    assert listing.returncode == 0 and "serve" in listing.stdout and "tornado" in listing.stdout
