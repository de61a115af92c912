"""Faults injected under the bridge kernel (driven through jupyter_client): the server killed
mid-cell and brought back on the same endpoint, the remote kernel dying mid-cell, a server
slower than the read timeout, and shutdown / restart / SIGKILL of the bridge during a running
cell — after which no remote session and no kernel process may be left on the server."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

import kernel_support as ks
import server_fixture
from _procs import live_descendants, survivors
from _proxy import FlakyProxy
from remote_kernel.client import APIConfig, Client, errors

pytestmark = pytest.mark.slow

IDLE_TIMEOUT = 3


class Launched:
    """``remote-kernel serve`` with chosen keys and port (to come back on the same endpoint)."""

    def __init__(self, port: int = 0, access: str | None = None, secret: str | None = None, *extra: str):
        self.access = access or "AKFAULT" + secrets.token_hex(6).upper()
        self.secret = secret or "s" + secrets.token_urlsafe(30)  # never starts with '-'
        self.root = tempfile.mkdtemp(prefix="rk-fault-root-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remote_kernel", "serve", "--port", str(port), "--root", self.root,
             f"--access-key={self.access}", "--secret-key-file", server_fixture.write_secret(self.secret),
             "--warm-kernels", "0",  # these tests count the server's kernel processes
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        self.port = int(self.url.rsplit(":", 1)[1])

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {"BACKEND_ENDPOINT": endpoint or self.url, "BACKEND_ACCESS_KEY": self.access,
                "BACKEND_SECRET_KEY": self.secret}

    def client(self) -> Client:
        return Client(APIConfig(endpoint=[self.url], access_key=self.access, secret_key=self.secret))

    def descendants(self) -> list[psutil.Process]:
        return live_descendants(self.proc.pid)

    def kill(self) -> None:
        """A crash: the server and its kernels vanish at once."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        kids = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        left = survivors(kids, timeout=10)
        assert not left, f"kernel processes survived the server: {left}"


@pytest.fixture(scope="module")
def reaping_server():
    srv = Launched(0, None, None, "--idle-timeout", str(IDLE_TIMEOUT))
    yield srv
    srv.stop()


def wait_reply(kc, msg_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            break
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]
    raise TimeoutError(f"no execute_reply within {timeout} s")


def session_name_of(kc) -> str:
    reply, outputs, _ = ks.execute(kc, "%remote info")
    assert reply["status"] == "ok", reply
    return re.search(r"^session: (\S+)$", ks.stdout_of(outputs), re.M).group(1)


def kernels_settle(srv: Launched, baseline: int, timeout: float) -> int:
    """The server's process count once it is back to ``baseline`` (or after ``timeout``): a
    bounded poll, as processes ending send no event we could wait for."""
    deadline = time.monotonic() + timeout
    count = len(srv.descendants())
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
        count = len(srv.descendants())
    return count


# ---- the server dies and comes back --------------------------------------------------------------

def test_server_killed_mid_cell_then_back_on_the_same_endpoint(kernelspec_root):
    first = Launched()
    second = None
    try:
        with ks.running_kernel(first.env()) as (km, kc):
            assert ks.execute(kc, "x = 42", timeout=60)[0]["status"] == "ok"
            msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)")
            ks.wait_for_output(kc, msg_id, "sleeping")
            first.kill()
            reply = wait_reply(kc, msg_id, 20)  # well before the cell's 30 s are over
            assert reply["status"] == "error" and first.url in reply["evalue"], reply
            ks.drain_iopub(kc)
            assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"
            # the server comes back on the same port with the same keys: the next cell runs in a
            # new session and says that the remote state is gone
            second = Launched(first.port, first.access, first.secret)
            assert second.url == first.url
            reply, outputs, _ = ks.execute(kc, "print('x' in dir())", timeout=60)
            assert reply["status"] == "ok", reply
            assert ks.stdout_of(outputs) == "False\n"
            assert "remote state" in ks.stderr_of(outputs), outputs
            reply, outputs, _ = ks.execute(kc, "print('fine')", timeout=60)
            assert ks.stdout_of(outputs) == "fine\n" and ks.stderr_of(outputs) == ""
    finally:
        first.kill()
        if second is not None:
            second.stop()


# ---- the remote kernel dies ---------------------------------------------------------------------

def test_remote_kernel_dies_mid_cell_then_a_fresh_session(reaping_server, kernelspec_root):
    srv = reaping_server
    with ks.running_kernel(srv.env()) as (km, kc):
        assert ks.execute(kc, "y = 1", timeout=60)[0]["status"] == "ok"
        old = session_name_of(kc)
        reply, outputs, _ = ks.execute(
            kc, "import os, time\nprint('before', flush=True)\ntime.sleep(0.5)\nos._exit(1)", timeout=60)
        assert reply["status"] == "error", reply
        text = reply["ename"] + ": " + reply["evalue"]
        assert re.search(r"died|vanished|lost", text, re.I), text
        assert "before" in ks.stdout_of(outputs)
        reply, outputs, _ = ks.execute(kc, "print('y' in dir())", timeout=60)
        assert reply["status"] == "ok", reply
        assert ks.stdout_of(outputs) == "False\n" and "remote state" in ks.stderr_of(outputs)
        assert session_name_of(kc) != old


# ---- a slow server ------------------------------------------------------------------------------

def test_slow_server_retry_or_clear_timeout_never_a_hang(reaping_server, kernelspec_root):
    srv = reaping_server
    host = "127.0.0.1"
    with FlakyProxy(host, srv.port, reset_share=0.0, delay_share=0.0) as proxy:
        env = srv.env(proxy.url)
        env["BACKEND_READ_TIMEOUT"] = "2"
        with ks.running_kernel(env) as (km, kc):
            assert ks.execute(kc, "n = 0", timeout=60)[0]["status"] == "ok"
            proxy.read_delay = 4.0  # every answer arrives after the read timeout
            started = time.monotonic()
            # never a hang: a reply within the (generous) timeout
            reply, outputs, _ = ks.execute(kc, "n += 1\nprint('slow')", timeout=60)
            print(f"\nslow server: {reply['status']} {reply.get('ename')} after {time.monotonic() - started:.1f} s")
            if reply["status"] == "error":
                assert reply["ename"] == "RequestTimeout", reply
                assert proxy.url in reply["evalue"] and "2 s" in reply["evalue"], reply["evalue"]
            else:
                assert ks.stdout_of(outputs) == "slow\n"
            proxy.read_delay = 0.0
            assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"
            # the network is fast again: the kernel works, and the slow cell ran at most once
            reply, outputs, _ = ks.execute(kc, "import time; time.sleep(1); print(n)", timeout=60)
            assert reply["status"] == "ok", reply
            assert ks.stdout_of(outputs) in ("0\n", "1\n")


# ---- the bridge goes away during a running cell -------------------------------------------------

@pytest.mark.parametrize("how", ["shutdown", "restart", "sigkill"])
def test_bridge_gone_mid_cell_leaves_no_session_nor_process(reaping_server, kernelspec_root, how):
    srv = reaping_server
    baseline = kernels_settle(srv, 0, 2 * IDLE_TIMEOUT + 10)
    with srv.client() as client:
        with ks.running_kernel(srv.env()) as (km, kc):
            name = session_name_of(kc)
            assert client.get_session(name) and os.path.isdir(os.path.join(srv.root, name))
            assert len(srv.descendants()) > baseline
            msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(4)")
            ks.wait_for_output(kc, msg_id, "sleeping")
            if how == "shutdown":
                km.shutdown_kernel(now=False)
            elif how == "restart":
                km.restart_kernel(now=False)
                kc.wait_for_ready(timeout=60)
                ks.drain_iopub(kc)
                # the remote kernel was restarted in place (issue 15): the same session goes on,
                # and it is this kernel's to end
                assert session_name_of(kc) == name
                km.shutdown_kernel(now=False)
            else:
                os.kill(km.provisioner.process.pid, signal.SIGKILL)
                km.provisioner.process.wait()
        # the running cell ends by itself, then the idle reaper takes what was left behind
        # (watched through the session's directory: an API call would count as a use)
        deadline = time.monotonic() + 4 + IDLE_TIMEOUT + 15
        folder = os.path.join(srv.root, name)
        while time.monotonic() < deadline and os.path.exists(folder):  # a bounded poll: no event
            time.sleep(0.1)
        assert not os.path.exists(folder), f"session {name} outlived the bridge ({how})"
        with pytest.raises(errors.SessionNotFound):
            client.get_session(name)
    count = kernels_settle(srv, baseline, 20)
    print(f"\n{how}: server descendants {baseline} before, {count} after")
    assert count == baseline, [p.cmdline() for p in srv.descendants()]
