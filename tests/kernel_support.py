"""Helpers for the bridge-kernel suites: a kernelspec in a temporary JUPYTER_PATH, kernels
started through jupyter_client, and message collection."""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from jupyter_client.manager import KernelManager

KERNEL_NAME = "remote-test"
# the same bridge told to ignore the server's extensions: the classic (real Backend.AI) behaviour
CLASSIC_KERNEL = "remote-test-classic"


def write_kernelspec(root: Path, name: str = KERNEL_NAME, image: str = "python",
                     endpoint: str | None = None, extra_argv: list[str] | None = None) -> Path:
    """``{root}/kernels/<name>/kernel.json`` for the bridge; put ``root`` on JUPYTER_PATH."""
    argv = [sys.executable, "-m", "remote_kernel.kernel", "-f", "{connection_file}",
            f"--RemoteKernel.image={image}"]
    if endpoint:
        argv.append(f"--APIConfig.endpoint={endpoint}")
    argv.extend(extra_argv or [])
    folder = root / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": f"Remote test ({image})", "language": "python",
        "interrupt_mode": "message", "metadata": {"debugger": False},
    }))
    return folder


def prepend_jupyter_path(root: Path) -> None:
    paths = [str(root)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)


@contextmanager
def on_jupyter_path(root: Path) -> Iterator[Path]:
    """Kernelspecs under ``root`` visible to every kernel started inside; JUPYTER_PATH restored."""
    saved = os.environ.get("JUPYTER_PATH")
    prepend_jupyter_path(root)
    try:
        yield root
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = saved


@contextmanager
def running_kernel(env: dict[str, str], name: str = KERNEL_NAME, startup_timeout: float = 60,
                   unset: tuple[str, ...] = ()) -> Iterator[tuple[KernelManager, Any]]:
    """Start the named kernelspec with ``env`` added and ``unset`` removed; yield (manager,
    blocking client); always shut it down."""
    km = KernelManager(kernel_name=name)
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    full_env.update(env)
    km.start_kernel(env=full_env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=startup_timeout)
        yield km, kc
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=False)
        km.cleanup_resources()


def shell_reply(kc, msg_id: str, timeout: float = 15) -> dict:
    """The shell reply to ``msg_id`` (replies to other requests are skipped)."""
    while True:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def abandon_after_two_interrupts(km, kc, msg_id: str, interrupt=None) -> None:
    """Interrupt the running cell ``msg_id`` once, wait past the grace time (3 s), interrupt
    again: the cell must end at once with the abandonment error, and the kernel live on."""
    interrupt = interrupt or km.interrupt_kernel
    time.sleep(1.0)
    interrupt()
    time.sleep(3.5)  # longer than the grace time
    started = time.monotonic()
    interrupt()
    msg = shell_reply(kc, msg_id)
    assert time.monotonic() - started < 2.0
    assert msg["content"]["ename"] == "KeyboardInterrupt"
    assert "stopped waiting" in msg["content"]["evalue"]
    assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"


def drain_iopub(kc) -> None:
    while True:
        try:
            kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            return


def execute(kc, code: str, timeout: float = 60, allow_stdin: bool = False, stdin_answers: list[str] | None = None,
            silent: bool = False, stamp: bool = False) -> tuple[dict, list[dict], list[dict]]:
    """Run a cell; return (execute_reply content, iopub outputs, input_requests).  Answers
    input requests from ``stdin_answers`` in order.  ``stamp``: each output also gets
    ``received``, the time.monotonic() it arrived at."""
    msg_id = kc.execute(code, allow_stdin=allow_stdin, silent=silent)
    answers = list(stdin_answers or [])
    outputs: list[dict] = []
    input_requests: list[dict] = []
    deadline = time.monotonic() + timeout
    reply = None
    idle = False
    while time.monotonic() < deadline and (reply is None or not idle):
        if allow_stdin:
            try:
                msg = kc.get_stdin_msg(timeout=0.01)
                if msg["msg_type"] == "input_request":
                    input_requests.append(msg["content"])
                    kc.input(answers.pop(0) if answers else "")
            except queue.Empty:
                pass
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            msg = None
        if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
            if msg["msg_type"] == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif msg["msg_type"] not in ("execute_input",):
                outputs.append({"msg_type": msg["msg_type"], **msg["content"],
                                **({"received": time.monotonic()} if stamp else {})})
        if reply is None:
            try:
                shell = kc.get_shell_msg(timeout=0.01)
                if shell["parent_header"].get("msg_id") == msg_id:
                    reply = shell["content"]
            except queue.Empty:
                pass
    if reply is None:
        raise TimeoutError(f"no execute_reply within {timeout} s for {code!r}")
    return reply, outputs, input_requests


def stdout_of(outputs: list[dict]) -> str:
    return "".join(o["text"] for o in outputs if o["msg_type"] == "stream" and o["name"] == "stdout")


def stderr_of(outputs: list[dict]) -> str:
    return "".join(o["text"] for o in outputs if o["msg_type"] == "stream" and o["name"] == "stderr")


# ---- the embedded server as the bridge's peer ----------------------------------------------------


def server_env(server, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
    """The environment a bridge kernel needs to reach ``server`` (keys at run time, never in
    kernel.json)."""
    return {"BACKEND_ENDPOINT": server.url,
            "BACKEND_ACCESS_KEY": access_key or server.access_key,
            "BACKEND_SECRET_KEY": secret_key or server.secret_key}


def api_client(server):
    """A fresh API client of ``server`` (usable as a context manager)."""
    from remote_kernel.client import APIConfig, Client

    return Client(APIConfig(endpoint=[server.url], access_key=server.access_key, secret_key=server.secret_key))


def server_has_switch(flag: str) -> bool:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "remote_kernel", "serve", "--help"],
                         capture_output=True, text=True, timeout=60).stdout
    return flag in out


@contextmanager
def start_server(extensions: bool = True):
    """The embedded server (tests/server_fixture.py) as a context manager; ``extensions=False``
    starts it with our protocol extensions switched off (classic behaviour)."""
    import tempfile

    import server_fixture

    extra = [] if extensions else ["--no-extensions"]
    srv = server_fixture.start_server(tempfile.mkdtemp(prefix="rk-kernel-srv-"), *extra)
    try:
        yield srv
    finally:
        srv.stop()
