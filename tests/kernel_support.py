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
                   unset: tuple[str, ...] = (), cwd: str | None = None) -> Iterator[tuple[KernelManager, Any]]:
    """Start the named kernelspec with ``env`` added and ``unset`` removed (in ``cwd``); yield
    (manager, blocking client); always shut it down."""
    km = KernelManager(kernel_name=name)
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    full_env.update(env)
    km.start_kernel(env=full_env, **({"cwd": cwd} if cwd else {}))
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


def interrupt_request(kc, timeout: float = 30) -> dict:
    """An ``interrupt_request`` on the control channel (what ``KernelManager.interrupt_kernel``
    sends for ``interrupt_mode: message``), returning its reply: once it is back, the kernel has
    taken the interrupt in."""
    request = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(request)
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_control_msg(timeout=max(0.01, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
            return reply


def abandon_after_two_interrupts(kc, msg_id: str, running, interrupt=None, grace: float = 3.0) -> None:
    """Interrupt the running cell ``msg_id`` once, wait past the grace time, interrupt again:
    the cell must end with the abandonment error, and the kernel live on.

    ``running()`` returns once the cell is known to run (its loop is waiting on the remote).
    ``interrupt(first)`` interrupts; for the first one it returns only once the kernel has taken
    it in (the grace time counts from there).  Default: ``interrupt_request``, whose reply says so."""
    interrupt = interrupt or (lambda first: interrupt_request(kc))
    running()
    interrupt(True)
    time.sleep(grace + 0.5)  # the subject: the grace time passes (kernel.interrupt_grace)
    interrupt(False)
    # the remote never ends the cell by itself within this wait: any reply is the abandonment
    msg = shell_reply(kc, msg_id, timeout=20)
    assert msg["content"]["ename"] == "KeyboardInterrupt", msg["content"]
    assert "stopped waiting" in msg["content"]["evalue"], msg["content"]
    assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"


def wait_for_output(kc, msg_id: str, marker: str, timeout: float = 30, stamp: bool = False) -> list[dict]:
    """Read iopub until a stream output of the cell ``msg_id`` contains ``marker``: the event
    "the cell runs and got that far".  Returns that cell's outputs read meanwhile (as
    ``execute`` lists them), so a caller can add them to what ``collect`` gets later."""
    return wait_for_iopub(kc, msg_id, lambda m: m["msg_type"] == "stream" and marker in m["content"]["text"],
                          timeout, stamp, what=f"output {marker!r}")


def wait_for_iopub(kc, msg_id: str, predicate, timeout: float = 30, stamp: bool = False,
                   what: str = "the message") -> list[dict]:
    """Read iopub until a message of the cell ``msg_id`` satisfies ``predicate``; the cell's
    outputs read meanwhile.  Fails if the cell goes idle first, or after ``timeout``."""
    outputs: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {what} within {timeout} s; outputs so far: {outputs}")
        try:
            msg = kc.get_iopub_msg(timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] not in ("status", "execute_input"):
            outputs.append({"msg_type": msg["msg_type"], **msg["content"],
                            **({"received": time.monotonic()} if stamp else {})})
        if predicate(msg):
            return outputs
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            raise AssertionError(f"the cell ended before {what}; its outputs: {outputs}")


def gate_code(path, timeout: float = 60) -> str:
    """Python source that waits until the file ``path`` exists: a cell that goes on only once
    the test has seen what it did before (the test creates the file).  Raises after ``timeout``
    so that a test that never opens the gate fails instead of hanging."""
    return (f"import os as _os, time as _time\n"
            f"_deadline = _time.monotonic() + {timeout}\n"
            f"while not _os.path.exists({str(path)!r}):\n"
            f"    if _time.monotonic() > _deadline:\n"
            f"        raise TimeoutError('the test never opened the gate {path}')\n"
            f"    _time.sleep(0.01)\n")


def wait_for_file(path, timeout: float = 30) -> None:
    """Wait until ``path`` exists (a file a cell writes).  A bounded poll: the file system
    offers no portable wait for a file to appear."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.01)


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
    reply, outputs, input_requests = collect(kc, msg_id, timeout, allow_stdin, stdin_answers, stamp)
    if reply is None:
        raise TimeoutError(f"no execute_reply within {timeout} s for {code!r}")
    return reply, outputs, input_requests


def collect(kc, msg_id: str, timeout: float = 60, allow_stdin: bool = False,
            stdin_answers: list[str] | None = None, stamp: bool = False) -> tuple[dict | None, list[dict], list[dict]]:
    """``execute`` for a cell already sent (``msg_id``): its reply (None after ``timeout``),
    outputs and input requests from now until it is idle."""
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
