"""The bridge kernel driven through jupyter_client against the embedded server: input, stdin
refusal, interrupt, shutdown, a server that dies mid-cell, bad keys, a vanished session, and
the same core behaviour against a server whose protocol extensions are switched off (--no-extensions)."""

from __future__ import annotations

import os
import re
import signal

import pytest

import kernel_support as ks
from remote_kernel.client import errors

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def server():
    with ks.start_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def classic_server():
    """A server that offers no extension (--no-extensions), as a real cluster."""
    with ks.start_server(extensions=False) as srv:
        with ks.api_client(srv) as client:
            assert not client.extensions
        yield srv, ks.KERNEL_NAME


@pytest.fixture(scope="module")
def kernel(server, kernelspec_root):
    with ks.running_kernel(ks.server_env(server)) as (km, kc):
        reply, _, _ = ks.execute(kc, "pass", timeout=60)  # wait for the remote session once
        assert reply["status"] == "ok", reply
        yield km, kc


@pytest.fixture(scope="module")
def classic_kernel(classic_server, kernelspec_root):
    srv, kernel_name = classic_server
    with ks.running_kernel(ks.server_env(srv), name=kernel_name) as (km, kc):
        reply, _, _ = ks.execute(kc, "pass", timeout=60)
        assert reply["status"] == "ok", reply
        yield km, kc


def session_name_of(kc) -> str:
    reply, outputs, _ = ks.execute(kc, "%remote info")
    assert reply["status"] == "ok", reply
    return re.search(r"^session: (\S+)$", ks.stdout_of(outputs), re.M).group(1)


def interrupt_sleep(km, kc) -> dict:
    """Interrupt a cell sleeping 60 s once it runs; its reply (well before the 60 s are over)."""
    msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    ks.wait_for_output(kc, msg_id, "sleeping")
    km.interrupt_kernel()
    return ks.shell_reply(kc, msg_id, timeout=30)["content"]


# ---- with the extension (lossless) -------------------------------------------------------------

def test_state_persists_between_cells_and_output_streams(kernel):
    _, kc = kernel
    assert ks.execute(kc, "x = 41")[0]["status"] == "ok"
    reply, outputs, _ = ks.execute(kc, "print(x + 1)")
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == "42\n"


def test_output_arrives_before_the_cell_ends(kernel, tmp_path):
    # the cell cannot end before the test has seen its first line: it waits for the test's gate
    _, kc = kernel
    gate = tmp_path / "gate"
    msg_id = kc.execute("print('first', flush=True)\n" + ks.gate_code(gate) + "print('second')")
    before = ks.wait_for_output(kc, msg_id, "first")
    gate.touch()
    reply, after, _ = ks.collect(kc, msg_id, timeout=30)
    assert reply is not None and reply["status"] == "ok", reply
    assert ks.stdout_of(before) == "first\n" and ks.stdout_of(after) == "second\n"


def test_input_and_password_are_answered_by_the_frontend(kernel):
    _, kc = kernel
    reply, outputs, asked = ks.execute(kc, "name = input('Name? ')\nprint('hi', name)",
                                       allow_stdin=True, stdin_answers=["bob"])
    assert reply["status"] == "ok", reply
    assert asked == [{"prompt": "Name? ", "password": False}]
    assert ks.stdout_of(outputs) == "hi bob\n"
    reply, outputs, asked = ks.execute(kc, "import getpass\ns = getpass.getpass('Secret: ')\nprint(len(s))",
                                       allow_stdin=True, stdin_answers=["hunter2"])
    assert reply["status"] == "ok", reply
    assert asked == [{"prompt": "Secret: ", "password": True}]
    assert ks.stdout_of(outputs).strip().endswith("7")


@pytest.mark.parametrize("interrupt", ["interrupt_request", "SIGINT"])
def test_interrupt_while_the_frontend_is_asked_for_input(kernel, interrupt):
    # Nobody answers the prompt: an interrupt must end the cell (the waiting loop and the
    # remote input both stop) and leave the kernel working.
    km, kc = kernel
    msg_id = kc.execute("input('never answered? ')", allow_stdin=True)
    request = kc.get_stdin_msg(timeout=30)
    assert request["content"]["prompt"] == "never answered? "
    if interrupt == "SIGINT":
        os.kill(km.provisioner.process.pid, signal.SIGINT)
    else:
        km.interrupt_kernel()
    reply = ks.shell_reply(kc, msg_id, timeout=30)["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "did not stop" not in reply["evalue"], reply  # the remote stopped: not given up on
    ks.drain_iopub(kc)
    assert ks.execute(kc, "print('still here')")[0]["status"] == "ok"


def test_stdin_not_allowed_is_a_clear_error_not_a_hang(kernel):
    _, kc = kernel
    reply, outputs, _ = ks.execute(kc, "input('x? ')", allow_stdin=False, timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "StdinNotImplementedError"
    assert [o["msg_type"] for o in outputs].count("error") == 1


def test_silent_cells_send_no_output(kernel):
    _, kc = kernel
    reply, outputs, _ = ks.execute(kc, "print('quiet'); 5", silent=True)
    assert reply["status"] == "ok" and outputs == []


def test_interrupt_ends_the_cell_and_the_kernel_lives(kernel):
    km, kc = kernel
    reply = interrupt_sleep(km, kc)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    ks.drain_iopub(kc)
    reply, outputs, _ = ks.execute(kc, "print('after')")
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == "after\n"


def test_directives_upload_and_download(kernel, tmp_path, monkeypatch):
    _, kc = kernel
    # the kernel resolves local paths against its own working directory: use absolute paths
    src = tmp_path / "data.txt"
    src.write_text("payload 123")
    reply, outputs, _ = ks.execute(kc, f"%remote upload {src} data.txt\nprint(open('data.txt').read())")
    assert reply["status"] == "ok", reply
    assert "payload 123" in ks.stdout_of(outputs)
    ks.execute(kc, "open('made.txt', 'w').write('remote made')")
    dest = tmp_path / "made.txt"
    reply, _, _ = ks.execute(kc, f"%remote download made.txt {dest}")
    assert reply["status"] == "ok", reply
    assert dest.read_text() == "remote made"
    reply, outputs, _ = ks.execute(kc, "%remote nope")
    assert reply["status"] == "error" and reply["ename"] == "DirectiveError"


def test_ipython_magics_go_to_the_remote(kernel):
    _, kc = kernel
    reply, outputs, _ = ks.execute(kc, "%%capture c\nprint('hidden')")
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == ""


def test_a_vanished_session_is_replaced_with_a_visible_note(server, kernel):
    _, kc = kernel
    name = session_name_of(kc)
    with ks.api_client(server) as client:
        client.destroy_session(name)
    reply, outputs, _ = ks.execute(kc, "print('again')", timeout=60)
    assert reply["status"] == "ok", reply
    assert "remote state" in ks.stderr_of(outputs) and ks.stdout_of(outputs) == "again\n"
    assert session_name_of(kc) != name


def test_shutdown_leaves_no_session_on_the_server(server, kernelspec_root):
    with ks.api_client(server) as client:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            name = session_name_of(kc)
            assert client.get_session(name)
            km.shutdown_kernel(now=False)
        with pytest.raises(errors.SessionNotFound):
            client.get_session(name)


def test_shutdown_during_a_running_cell_exits_cleanly_and_ends_the_session(server, kernelspec_root):
    # The main thread is inside the cell's loop; a shutdown (control thread) must break it, or
    # the process hangs until jupyter_client kills it (a signal's exit code) and the session leaks.
    with ks.api_client(server) as client:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            assert ks.execute(kc, "pass", timeout=60)[0]["status"] == "ok"
            name = session_name_of(kc)
            msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
            ks.wait_for_output(kc, msg_id, "sleeping")
            process = km.provisioner.process
            # jupyter_client kills a kernel still there after this (a signal's exit code): a
            # generous bound for a loaded machine, still far below the cell's 60 s
            km.shutdown_wait_time = 20
            km.shutdown_kernel(now=False)
            assert process.returncode == 0
        with pytest.raises(errors.SessionNotFound):
            client.get_session(name)


def test_bad_keys_give_a_clear_error_cell(server, kernelspec_root):
    env = ks.server_env(server, secret_key="definitely-the-wrong-secret")
    with ks.running_kernel(env) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "print(1)", timeout=30)
        assert reply["status"] == "error"
        assert reply["ename"] == "AuthenticationError"
        assert server.url in reply["evalue"] and "BACKEND_SECRET_KEY" in reply["evalue"]
        assert "definitely-the-wrong-secret" not in str(reply) + str(outputs)
        # the kernel lives on and tries again
        assert ks.execute(kc, "print(2)", timeout=30)[0]["ename"] == "AuthenticationError"


def test_server_stopped_mid_cell_is_a_clear_error_and_the_kernel_lives(kernelspec_root):
    with ks.start_server() as srv:
        with ks.running_kernel(ks.server_env(srv)) as (km, kc):
            assert ks.execute(kc, "pass", timeout=60)[0]["status"] == "ok"
            msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)")
            ks.wait_for_output(kc, msg_id, "sleeping")
            os.killpg(srv.proc.pid, signal.SIGKILL)  # a crash: the server and its kernels vanish
            srv.proc.wait(10)
            reply = ks.shell_reply(kc, msg_id, timeout=20)["content"]  # before the cell's 30 s
            assert reply["status"] == "error" and reply["ename"] in ("ConnectionFailed", "RequestTimeout")
            assert srv.url in reply["evalue"]
            ks.drain_iopub(kc)
            assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"
            reply, _, _ = ks.execute(kc, "print(1)", timeout=30)
            assert reply["status"] == "error" and srv.url in reply["evalue"]


# ---- classic behaviour (the server's extension switched off) -----------------------------------

def test_classic_hello_state_and_media(classic_kernel):
    _, kc = classic_kernel
    reply, outputs, _ = ks.execute(kc, "y = 2\nprint('hello, world', y)")
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == "hello, world 2\n"
    code = ("from IPython.display import display, HTML, SVG\n"
            "display(HTML('<i>x</i>'))\n"
            "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>'))")
    reply, outputs, _ = ks.execute(kc, code)
    kinds = [set(o["data"]) for o in outputs if o["msg_type"] == "display_data"]
    assert any("text/html" in k for k in kinds) and any("image/svg+xml" in k for k in kinds)
    assert all("text/plain" in k for k in kinds)


def test_classic_error_is_reported_twice(classic_kernel):
    _, kc = classic_kernel
    reply, outputs, _ = ks.execute(kc, "1/0")
    assert reply["status"] == "error"
    assert "ZeroDivisionError" in ks.stderr_of(outputs)  # the remote's traceback, as text
    errors_sent = [o for o in outputs if o["msg_type"] == "error"]
    assert len(errors_sent) == 1 and errors_sent[0]["ename"] == reply["ename"]


def test_classic_input_is_answered_by_the_frontend(classic_kernel):
    _, kc = classic_kernel
    reply, outputs, asked = ks.execute(kc, "name = input('Name? ')\nprint('hi', name)",
                                       allow_stdin=True, stdin_answers=["ann"])
    assert reply["status"] == "ok", reply
    assert len(asked) == 1 and "hi ann" in ks.stdout_of(outputs)


def test_classic_stdin_refusal_is_a_clear_error_not_a_hang(classic_kernel):
    _, kc = classic_kernel
    reply, _, _ = ks.execute(kc, "input('x? ')", allow_stdin=False, timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "StdinNotImplementedError"
    assert "does not support input" in reply["evalue"]
    assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"


def test_classic_session_usable_after_stdin_refusal(classic_kernel):
    _, kc = classic_kernel
    ks.execute(kc, "input('y? ')", allow_stdin=False, timeout=30)
    reply, outputs, _ = ks.execute(kc, "print('alive')", timeout=40)
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == "alive\n"


def test_classic_interrupt(classic_kernel):
    km, kc = classic_kernel
    reply = interrupt_sleep(km, kc)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    ks.drain_iopub(kc)
    assert ks.execute(kc, "print('ok')")[0]["status"] == "ok"


def test_classic_completion_positions(classic_kernel):
    _, kc = classic_kernel
    ks.execute(kc, "import os")
    code = "os.pa"
    kc.complete(code, len(code))
    content = kc.get_shell_msg(timeout=15)["content"]
    assert content["status"] == "ok"
    if content["matches"]:  # whatever the server offers, the replaced span must fit it
        start = content["cursor_start"]
        assert 0 <= start <= len(code) and content["cursor_end"] == len(code)
        assert all(m.startswith(code[start:]) for m in content["matches"])


# ---- more of the lossless bridge -----------------------------------------------------------------

def test_chatty_output_is_coalesced(kernel):
    _, kc = kernel
    reply, outputs, _ = ks.execute(kc, "for i in range(20000): print(i)", timeout=60)
    assert reply["status"] == "ok"
    streams = [o for o in outputs if o["msg_type"] == "stream"]
    assert ks.stdout_of(outputs) == "".join(f"{i}\n" for i in range(20000))
    assert len(streams) < 100, len(streams)


def test_sigint_during_a_cell_interrupts_the_remote_not_the_kernel(kernel):
    km, kc = kernel
    msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    ks.wait_for_output(kc, msg_id, "sleeping")
    os.kill(km.provisioner.process.pid, signal.SIGINT)
    msg = ks.shell_reply(kc, msg_id, timeout=30)  # well before the 60 s are over
    assert msg["content"]["ename"] == "KeyboardInterrupt"
    assert km.is_alive()
    ks.drain_iopub(kc)
    assert ks.execute(kc, "print('still here')")[0]["status"] == "ok"


def test_batch_directive_and_file_listing(kernel):
    _, kc = kernel
    cell = "%%remote batch --build '' --exec 'python batch_main.py' --file batch_main.py\nprint('from batch', 6 * 7)\n"
    reply, outputs, _ = ks.execute(kc, cell, timeout=60)
    assert reply["status"] == "ok", reply
    assert "from batch 42" in ks.stdout_of(outputs)
    reply, outputs, _ = ks.execute(kc, "%remote ls")
    assert reply["status"] == "ok" and "batch_main.py" in ks.stdout_of(outputs)
    reply, outputs, _ = ks.execute(kc, "%%remote batch --build '' --exec 'python -c \"raise SystemExit(3)\"'", timeout=60)
    assert reply["status"] == "error" and "code 3" in reply["evalue"]


def test_a_second_interrupt_abandons_a_remote_that_will_not_stop(server, kernelspec_root):
    stubborn = ("import time\nprint('started', flush=True)\nwhile True:\n    try:\n        time.sleep(60)\n"
                "    except KeyboardInterrupt:\n        print('ignored', flush=True)\n")
    with ks.running_kernel(ks.server_env(server)) as (km, kc):
        assert ks.execute(kc, "pass", timeout=60)[0]["status"] == "ok"
        msg_id = kc.execute(stubborn)
        ks.abandon_after_two_interrupts(kc, msg_id, running=lambda: ks.wait_for_output(kc, msg_id, "started"))


def test_restart_restarts_the_remote_kernel_in_place_and_shutdown_then_ends_the_session(server, kernelspec_root):
    """(The first output after a restart is checked in test_kernel_restart.py.)"""
    with ks.api_client(server) as client:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            ks.execute(kc, "x = 1", timeout=60)
            old = session_name_of(kc)
            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=60)
            ks.drain_iopub(kc)
            reply, outputs, _ = ks.execute(kc, "print('x' in dir())", timeout=60)
            assert ks.stdout_of(outputs) == "False\n"  # a fresh remote kernel
            assert session_name_of(kc) == old  # in the same session
        with pytest.raises(errors.SessionNotFound):
            client.get_session(old)


def test_unreachable_endpoint_kernel_info_at_once_and_a_clear_cell_error(kernelspec_root):
    from _fakes import closed_port

    url = f"http://127.0.0.1:{closed_port()}"
    env = {"BACKEND_ENDPOINT": url, "BACKEND_ACCESS_KEY": "AK", "BACKEND_SECRET_KEY": "SK"}
    with ks.running_kernel(env, startup_timeout=30) as (km, kc):
        info = kc.kernel_info(reply=True, timeout=10)["content"]  # not held by connection attempts
        assert url in info["banner"]
        reply, _, _ = ks.execute(kc, "print(1)", timeout=30)
        assert reply["ename"] == "ConnectionFailed" and url in reply["evalue"]
        assert "BACKEND_ENDPOINT" in reply["evalue"]


def test_endpoint_without_keys_says_what_to_set(kernelspec_root):
    """A configured endpoint without keys is an error naming the variables, never a silent
    fallback to the embedded default (which only applies when no endpoint is configured)."""
    env = {"BACKEND_ENDPOINT": "http://127.0.0.1:9", "BACKEND_ACCESS_KEY": "", "BACKEND_SECRET_KEY": ""}
    with ks.running_kernel(env, startup_timeout=10) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "print(1)")
        assert reply["status"] == "error" and "BACKEND_ACCESS_KEY" in reply["evalue"], reply
        assert "http://127.0.0.1:9" in reply["evalue"]
        assert [o["msg_type"] for o in outputs] == ["error"]
        reply, outputs, _ = ks.execute(kc, "%remote help")  # local directives still work
        assert reply["status"] == "ok" and "%remote upload" in ks.stdout_of(outputs)


def _drawing_code() -> str:
    return ("from remote_kernel.drawing.producer import Canvas\n"
            "c = Canvas(100, 50)\nc.circle(20, 20, 10)\nc.update()\nc.circle(60, 20, 5)\nc.update()\n")


@pytest.mark.parametrize("which", ["kernel", "classic_kernel"])
def test_drawings_reach_the_drawing_translator(which, request):
    """A remote drawing arrives as an `application/x-sorna-drawing` media record in both modes
    and leaves the bridge as the drawing bundle; a canvas keeps one display id in a cell."""
    from remote_kernel.protocol import MIME_DRAWING_JSON

    _, kc = request.getfixturevalue(which)
    reply, outputs, _ = ks.execute(kc, _drawing_code(), timeout=60)
    assert reply["status"] == "ok", reply
    shown = [o for o in outputs if o["msg_type"] in ("display_data", "update_display_data")]
    assert [o["msg_type"] for o in shown] == ["display_data", "update_display_data"]
    assert all(MIME_DRAWING_JSON in o["data"] and "image/svg+xml" in o["data"] for o in shown)
    assert shown[0]["transient"]["display_id"] == shown[1]["transient"]["display_id"]


def test_unknown_image_is_a_clear_error_naming_the_endpoint(server, kernelspec_root):
    ks.write_kernelspec(kernelspec_root, name="remote-test-badimage", image="no-such-image:9")
    with ks.running_kernel(ks.server_env(server), name="remote-test-badimage") as (km, kc):
        reply, outputs, _ = ks.execute(kc, "print(1)", timeout=30)
        assert reply["status"] == "error" and reply["ename"] == "ImageNotFound", reply
        assert server.url in reply["evalue"] and "image" in reply["evalue"]
        assert [o["msg_type"] for o in outputs] == ["error"]


def test_jupyter_config_file_sets_defaults_and_argv_wins(tmp_path, kernelspec_root):
    """`remote_kernel_config.py` in the Jupyter config dir configures every bridge kernel; the
    kernelspec's argv overrides it."""
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "remote_kernel_config.py").write_text(
        "c.RemoteKernel.image = 'julia:1.10'\nc.RemoteKernel.pygments_lexer = 'from-config'\n")
    env = {"JUPYTER_CONFIG_DIR": str(config_dir), "BACKEND_ENDPOINT": "", "BACKEND_ACCESS_KEY": "",
           "BACKEND_SECRET_KEY": ""}
    # the test kernelspec's argv says --RemoteKernel.image=python: that wins over the file
    with ks.running_kernel(env, startup_timeout=10) as (km, kc):
        info = kc.kernel_info(reply=True, timeout=10)["content"]["language_info"]
        assert info["name"] == "python" and info["pygments_lexer"] == "from-config"
