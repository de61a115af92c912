"""``remote_kernel.lean_kernel``: the IPython kernel the embedded server runs its Python sessions
on (and the base of the bridge's launcher).  It must behave as a stock ipykernel for every
output path while skipping the shell-channel thread and empty flushes; the switch
``subshells_enabled=True`` must give the stock behaviour back."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import pytest

import kernel_support as ks

pytestmark = pytest.mark.slow

THREADS = "import threading; print(sorted(t.name for t in threading.enumerate()))"


@contextmanager
def lean_kernel(tmp_path, *extra: str):
    folder = tmp_path / "kernels" / "lean-test"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "remote_kernel.lean_kernel", "-f", "{connection_file}", *extra],
        "display_name": "lean", "language": "python"}))
    # ipykernel does not capture file descriptor 1 when it believes it runs under pytest
    with ks.on_jupyter_path(tmp_path), \
            ks.running_kernel({}, name="lean-test", unset=("PYTEST_CURRENT_TEST",)) as (_km, kc):
        yield kc


def test_lean_kernel_has_no_shell_channel_thread_and_offers_no_subshells(tmp_path):
    with lean_kernel(tmp_path) as kc:
        features = kc.kernel_info(reply=True, timeout=10)["content"].get("supported_features", [])
        assert "kernel subshells" not in features
        reply, outputs, _ = ks.execute(kc, THREADS)
        assert reply["status"] == "ok", reply
        assert "Shell channel" not in ks.stdout_of(outputs)


def test_the_switch_gives_stock_ipykernel_back(tmp_path):
    with lean_kernel(tmp_path, "--LeanKernelApp.subshells_enabled=True") as kc:
        features = kc.kernel_info(reply=True, timeout=10)["content"].get("supported_features", [])
        assert "kernel subshells" in features
        reply, outputs, _ = ks.execute(kc, THREADS)
        assert "Shell channel" in ks.stdout_of(outputs), outputs


@pytest.mark.parametrize("code, stream, text", [
    ("print('plain')", "stdout", "plain\n"),
    ("import sys; sys.stdout.write('no newline')", "stdout", "no newline"),
    ("import sys; print('to stderr', file=sys.stderr)", "stderr", "to stderr\n"),
    # written by a child process straight to file descriptor 1: captured by the fd watcher
    ("import os; os.system('echo from a subprocess')", "stdout", "from a subprocess\n"),
    ("import sys\nfor i in range(3): sys.stdout.write(str(i))", "stdout", "012"),
])
def test_every_output_path_still_arrives_before_idle(tmp_path, code, stream, text):
    with lean_kernel(tmp_path) as kc:
        for _ in range(3):  # also on later cells, after empty flushes were skipped
            reply, outputs, _ = ks.execute(kc, code)
            assert reply["status"] == "ok", reply
            got = ks.stdout_of(outputs) if stream == "stdout" else ks.stderr_of(outputs)
            assert got == text, outputs


def test_results_errors_and_input_are_unchanged(tmp_path):
    with lean_kernel(tmp_path) as kc:
        reply, outputs, _ = ks.execute(kc, "6 * 7")
        assert [o["data"]["text/plain"] for o in outputs if o["msg_type"] == "execute_result"] == ["42"]
        reply, outputs, _ = ks.execute(kc, "1 / 0")
        assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
        assert [o["ename"] for o in outputs if o["msg_type"] == "error"] == ["ZeroDivisionError"]
        reply, outputs, requests = ks.execute(kc, "print(input('name? ') + '!')", allow_stdin=True,
                                              stdin_answers=["ada"])
        assert reply["status"] == "ok" and [r["prompt"] for r in requests] == ["name? "]
        assert ks.stdout_of(outputs) == "ada!\n"


SERVER_KERNEL = "--IPKernelApp.kernel_class=remote_kernel.lean_kernel.ServerIPythonKernel"


def iopub_types_of(kc, code: str) -> list[str]:
    msg_id = kc.execute(code)
    kinds = []
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "status":
            kind = msg["content"]["execution_state"]
        kinds.append(kind)
        if kind == "idle":
            return kinds


@pytest.mark.parametrize("extra, expected", [
    ((), ["busy", "execute_input", "stream", "execute_result", "idle"]),
    # the embedded server's kernel: only what the server reads (outputs, then idle)
    ((SERVER_KERNEL,), ["stream", "execute_result", "idle"]),
])
def test_iopub_messages_of_a_cell(tmp_path, extra, expected):
    with lean_kernel(tmp_path, *extra) as kc:
        ks.drain_iopub(kc)
        for _ in range(2):
            assert iopub_types_of(kc, "print('hi'); 6 * 7") == expected


def test_the_server_kernel_still_errors_and_asks_for_input(tmp_path):
    with lean_kernel(tmp_path, SERVER_KERNEL) as kc:
        reply, outputs, _ = ks.execute(kc, "1 / 0")
        assert reply["status"] == "error" and [o["ename"] for o in outputs if o["msg_type"] == "error"] == \
            ["ZeroDivisionError"]
        reply, outputs, requests = ks.execute(kc, "print(input('name? ') + '!')", allow_stdin=True,
                                              stdin_answers=["ada"])
        assert reply["status"] == "ok" and ks.stdout_of(outputs) == "ada!\n"


@pytest.mark.parametrize("extra", [(), (SERVER_KERNEL,)])
def test_a_shut_down_kernel_exits_with_status_0(tmp_path, extra):
    """It skips interpreter finalization after a normal end (``launch_then_exit_fast``) and ends
    with status 0, after the exit work user code can count on: its atexit handler and its
    ``weakref.finalize`` callback (for an object still alive, held by a module) have run."""
    hook, finalizer = tmp_path / "atexit.txt", tmp_path / "finalize.txt"
    code = (f"import atexit, sys, types, weakref\n"
            f"atexit.register(open({str(hook)!r}, 'w').write, 'ran')\n"
            f"class Kept: pass\n"
            f"sys.modules['kept'] = types.ModuleType('kept'); sys.modules['kept'].obj = Kept()\n"
            f"weakref.finalize(sys.modules['kept'].obj, open({str(finalizer)!r}, 'w').write, 'ran')\n")
    with lean_kernel(tmp_path, *extra) as kc:
        reply, _, _ = ks.execute(kc, code)
        assert reply["status"] == "ok", reply
        km = kc.parent  # the KernelManager that made the client
        km.request_shutdown()
        process = km.provisioner.process
        assert process.wait(timeout=20) == 0
    assert hook.read_text() == "ran"
    assert finalizer.read_text() == "ran"


def test_a_kernel_that_fails_keeps_its_exit_status(tmp_path):
    import subprocess
    done = subprocess.run([sys.executable, "-m", "remote_kernel.lean_kernel", "-f", str(tmp_path / "c.json"),
                           "--IPKernelApp.kernel_class=no_such_module.Kernel"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "no_such_module" in done.stderr


def messages_of(kc, code: str) -> tuple[dict, list[dict]]:
    """A cell's execute_reply and its IOPub messages until idle, whole (headers included)."""
    msg_id = kc.execute(code)
    iopub = []
    while not iopub or iopub[-1]["msg_type"] != "status" or iopub[-1]["content"]["execution_state"] != "idle":
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") == msg_id:
            iopub.append(msg)
    while True:
        reply = kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply, iopub


@pytest.mark.parametrize("extra, reply_first", [((), False), ((SERVER_KERNEL,), True)])
def test_the_server_kernel_replies_before_the_output_a_cell_left_unflushed(tmp_path, extra, reply_first):
    """The server's kernel makes its reply before sending what the cell printed without a flush
    (the server then knows that output ends the run: one answer); output printed with a flush
    goes out at once, before the reply, in either kernel.  Both still end with idle."""
    with lean_kernel(tmp_path, *extra) as kc:
        ks.drain_iopub(kc)
        for _ in range(2):
            reply, iopub = messages_of(kc, "print('flushed', flush=True); print('left to the end')")
            streams = [m for m in iopub if m["msg_type"] == "stream"]
            assert [m["content"]["text"] for m in streams] == ["flushed\n", "left to the end\n"]
            assert streams[0]["header"]["date"] < reply["header"]["date"]
            assert (reply["header"]["date"] < streams[1]["header"]["date"]) is reply_first
            assert iopub[-1]["msg_type"] == "status"


def test_large_output_goes_out_in_pieces_as_it_is_written(tmp_path):
    """A stream sends once a piece (1 MiB) waits, without waiting for its 0.2 s timer."""
    code = "import sys, time\nsys.stdout.write('x' * (1 << 20) + '\\n')\ntime.sleep(0.1)\nprint('end')"
    with lean_kernel(tmp_path, SERVER_KERNEL) as kc:
        _reply, iopub = messages_of(kc, code)
        assert [m["content"]["text"] for m in iopub if m["msg_type"] == "stream"] == ["x" * (1 << 20) + "\n", "end\n"]


def test_every_piece_of_large_output_comes_before_idle(tmp_path):
    """A piece its IOPub thread is still sending when the cell ends goes out before idle (the
    end's flush must not take the stream for idle while a flush has its text in hand)."""
    code = "import sys\nline = 'x' * 999 + '\\n'\nfor _ in range(6000): sys.stdout.write(line)"
    with lean_kernel(tmp_path, SERVER_KERNEL) as kc:
        for _ in range(8):
            _reply, iopub = messages_of(kc, code)
            assert sum(len(m["content"]["text"]) for m in iopub if m["msg_type"] == "stream") == 6_000_000
