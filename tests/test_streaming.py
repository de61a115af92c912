"""The bridge's websocket execute loop (client/stream.py) against the embedded server in classic
mode, the way it talks to real clusters: output streams while the cell runs even when the REST
loop would batch it, input and interrupts work, the next cell is never hit by the end of the
previous one, and a server without the endpoint gets the REST loop instead."""

from __future__ import annotations

import json
import socket
import tempfile
import time

import pytest

import kernel_support as ks
import server_fixture
from _relay import Listener, splice

pytestmark = pytest.mark.slow

# A real manager collects a REST poll's output for ~2 s; this server is told to collect it for
# the whole run (up to 30 s), so REST output comes in one batch at the end of a cell, while
# websocket frames flush within 0.2 s: a line that arrives while the cell still runs was streamed.
BATCHING = ["--no-extensions", "--hold", "30", "--coalesce", "30"]
STREAMED, RESTFUL = "rk-stream-auto", "rk-stream-rest"
PRINTS = "import time\nfor i in range(6):\n    print(i, flush=True)\n    time.sleep(0.25)\n"


@pytest.fixture(scope="module")
def batching_server():
    srv = server_fixture.start_server(tempfile.mkdtemp(prefix="rk-stream-srv-"), *BATCHING)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream-specs")
    ks.write_kernelspec(root, name=STREAMED)
    ks.write_kernelspec(root, name=RESTFUL, extra_argv=["--RemoteKernel.streaming=rest"])
    with ks.on_jupyter_path(root):
        yield root


@pytest.fixture(scope="module")
def streamed(batching_server, specs):
    with ks.running_kernel(ks.server_env(batching_server), name=STREAMED) as (km, kc):
        assert ks.execute(kc, "pass")[0]["status"] == "ok"
        yield km, kc


def stdout_arrivals(kc, code: str, timeout: float = 30) -> tuple[dict, list[tuple[float, str]]]:
    """Run ``code``; (reply, [(seconds after the request, stdout text)])."""
    started = time.monotonic()
    reply, outputs, _ = ks.execute(kc, code, timeout=timeout, stamp=True)
    return reply, [(o["received"] - started, o["text"]) for o in outputs
                   if o["msg_type"] == "stream" and o["name"] == "stdout"]


def test_output_streams_while_the_rest_loop_would_batch_it(batching_server, specs, streamed, tmp_path):
    _, kc = streamed
    # streamed: the first line arrives while the cell still runs — it waits for the test to see it
    gate = tmp_path / "gate"
    msg_id = kc.execute("print(0, flush=True)\n" + ks.gate_code(gate, timeout=40)
                        + "for i in range(1, 6):\n    print(i, flush=True)\n")
    first = ks.wait_for_output(kc, msg_id, "0", timeout=20)
    gate.touch()
    reply, rest, _ = ks.collect(kc, msg_id, timeout=30)
    assert reply is not None and reply["status"] == "ok", reply
    assert ks.stdout_of(first) == "0\n"
    assert ks.stdout_of(first + rest) == "".join(f"{i}\n" for i in range(6))

    # the same kind of cell through the REST loop on the same server: one batch at the end
    with ks.running_kernel(ks.server_env(batching_server), name=RESTFUL) as (_km, rest_kc):
        assert ks.execute(rest_kc, "pass")[0]["status"] == "ok"
        reply, batched = stdout_arrivals(rest_kc, PRINTS)
    assert reply["status"] == "ok", reply
    assert [text for _, text in batched] == ["".join(f"{i}\n" for i in range(6))], batched


def execute_loop_of(kc) -> str:
    reply, outputs, _ = ks.execute(kc, "%remote info")
    assert reply["status"] == "ok", reply
    return next(line for line in ks.stdout_of(outputs).splitlines() if line.startswith("execute loop:"))


def test_remote_info_names_the_loop(streamed):
    assert execute_loop_of(streamed[1]) == "execute loop: websocket"


def test_streamed_input_and_password(streamed):
    _, kc = streamed
    reply, outputs, asked = ks.execute(kc, "print('hi ' + input('name? '))", allow_stdin=True, stdin_answers=["ada"])
    assert reply["status"] == "ok", reply
    assert "hi ada" in ks.stdout_of(outputs)
    assert asked and asked[0]["password"] is False
    reply, outputs, asked = ks.execute(kc, "import getpass\nprint(len(getpass.getpass()))", allow_stdin=True,
                                       stdin_answers=["secret"])
    assert reply["status"] == "ok", reply
    assert asked and asked[0]["password"] is True
    assert "6" in ks.stdout_of(outputs)


def test_streamed_batch_run(streamed):
    _, kc = streamed
    reply, outputs, _ = ks.execute(kc, "%%remote batch --build '' --exec 'python main.py' --file main.py\n"
                                       "print('built and run')\n", timeout=60)
    assert reply["status"] == "ok", reply
    assert "built and run" in ks.stdout_of(outputs)


def test_refused_input_ends_the_cell_and_spares_the_next_one(streamed):
    _, kc = streamed
    reply, _, _ = ks.execute(kc, "input('name? ')", allow_stdin=False, timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "StdinNotImplementedError", reply
    # the interrupt that stopped the remote run must not reach the next cell
    reply, outputs, _ = ks.execute(kc, "import time\ntime.sleep(1.5)\nprint('next')", timeout=30)
    assert reply["status"] == "ok", reply
    assert ks.stdout_of(outputs) == "next\n"


def test_interrupt_of_a_streamed_cell(streamed):
    km, kc = streamed
    msg_id = kc.execute("import time\nprint('start', flush=True)\ntime.sleep(30)")
    ks.wait_for_output(kc, msg_id, "start")
    km.interrupt_kernel()
    reply = ks.shell_reply(kc, msg_id, timeout=20)["content"]  # before the cell's 30 s
    assert reply["status"] == "error", reply
    ks.drain_iopub(kc)
    reply, outputs, _ = ks.execute(kc, "print('after')", timeout=30)
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == "after\n", (reply, outputs)


class NoStreamProxy:
    """Forwards every connection to the server, except an upgrade to ``/stream/...``, which it
    answers like a server without that endpoint (404 url-not-found) or a busy one (503);
    ``status=None`` forwards those too."""

    def __init__(self, target_port: int, status: int | None = 404):
        self.target = ("127.0.0.1", target_port)
        self.status = status
        self.refused = 0
        self.listener = Listener(self._serve)
        self.url = f"http://127.0.0.1:{self.listener.port}"

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        if self.status and head.split(b" ", 2)[1].startswith(b"/stream/"):
            self.refused += 1
            slug, reason = ("url-not-found", "Not Found") if self.status == 404 else ("service-unavailable", "Busy")
            body = json.dumps({"type": f"https://api.backend.ai/probs/{slug}", "title": reason})
            client.sendall(f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: application/problem+json\r\n"
                           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
            client.close()
            return
        upstream = socket.create_connection(self.target)
        upstream.sendall(head)
        splice(client, upstream)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("status", [404, 503])
def test_a_refused_upgrade_gets_the_rest_loop(batching_server, specs, status):
    """404: a server without the endpoint; the bridge remembers it.  503: a busy one; that cell
    goes through the REST loop (whose transport waits such answers out), the next tries again."""
    proxy = NoStreamProxy(int(batching_server.url.rsplit(":", 1)[1]), status)
    try:
        env = dict(ks.server_env(batching_server), BACKEND_ENDPOINT=proxy.url)
        with ks.running_kernel(env, name=STREAMED) as (_km, kc):
            for i in range(2):
                reply, outputs, _ = ks.execute(kc, f"print('rest {i}')", timeout=30)
                assert reply["status"] == "ok", reply
                assert ks.stdout_of(outputs) == f"rest {i}\n"
            loop = execute_loop_of(kc)
        if status == 404:
            assert proxy.refused == 1  # asked once, then remembered for the kernel's life
            assert loop == "execute loop: REST (the server refused the websocket endpoint)"
        else:
            assert proxy.refused == 2  # asked again for every cell
            assert loop == "execute loop: websocket"
    finally:
        proxy.close()


def test_an_endpoint_that_stops_answering_hands_the_cell_to_the_rest_loop(batching_server, specs):
    """Two endpoints; the first stops taking connections after the session exists.  The upgrade
    to it is refused before anything is sent, so the REST loop runs the cell (on its live
    keep-alive connection, or failing over to the second endpoint): no cell fails."""
    port = int(batching_server.url.rsplit(":", 1)[1])
    first, second = NoStreamProxy(port, None), NoStreamProxy(port, None)
    try:
        env = dict(ks.server_env(batching_server), BACKEND_ENDPOINT=f"{first.url},{second.url}")
        with ks.running_kernel(env, name=STREAMED) as (_km, kc):
            assert ks.execute(kc, "print('a')", timeout=30)[1][-1]["text"] == "a\n"
            first.close()
            for letter in "bc":
                reply, outputs, _ = ks.execute(kc, f"print('{letter}')", timeout=60)
                assert reply["status"] == "ok", reply
                assert ks.stdout_of(outputs) == f"{letter}\n"
    finally:
        first.close()
        second.close()
