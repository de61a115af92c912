"""The websocket execute loop (``GET /stream/session/{id}/execute``,
docs/PROTOCOL.md#streaming-over-a-websocket) of a real ``remote-kernel serve`` process: frames
as they are flushed, input replies as text frames, bad first frames, problem+json refusals
before the upgrade, interruption when the client leaves."""

from __future__ import annotations

import json
import signal
import time
import uuid

import pytest
import requests
import websocket
from server_fixture import start_server

import kernel_support as ks
from remote_kernel import protocol
from remote_kernel.client.auth import BackendAIAuth

FRAME_KEYS = {"status", "console", "exitCode", "options", "files"}


def name() -> str:
    return "ws-" + uuid.uuid4().hex[:10]


def connect(server, path: str, access_key: str | None = None, secret: str | None = None,
            version: str = protocol.SERVER_API_VERSION, drop: tuple = (), **options) -> websocket.WebSocket:
    """A websocket to ``path``, the upgrade GET signed like any API call."""
    http_url = server.url + path
    prepared = requests.Request("GET", http_url).prepare()
    BackendAIAuth(access_key or server.access_key, secret or server.secret_key, version)(prepared)
    headers = [f"{k}: {v}" for k, v in prepared.headers.items() if k not in drop]
    return websocket.create_connection("ws" + http_url[len("http"):], header=headers, timeout=30, **options)


def frames(ws, replies=()):
    """Every frame until the server closes, with arrival times; ``replies`` answer the
    ``waiting-input`` frames in turn (none left: answered already).  Asserts a normal close."""
    replies = list(replies)
    got = []
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            assert data[:2] in (b"", (1000).to_bytes(2, "big")), data
            return got
        assert opcode == websocket.ABNF.OPCODE_TEXT
        frame = json.loads(data)
        got.append((time.monotonic(), frame))
        if frame.get("status") == "waiting-input" and replies:
            ws.send(replies.pop(0))


def stream(server, sess, code, options=None, replies=(), family="session"):
    ws = connect(server, f"/stream/{family}/{sess}/execute")
    try:
        ws.send(json.dumps({"mode": "query", "code": code, "options": options or {}}))
        return frames(ws, replies)
    finally:
        ws.close()


def gated_stream(server, sess, code, gate, options=None, replies=()):
    """``stream`` for a ``code`` that waits for the file ``gate``: the gate is opened once the
    first frame has come, so that frame came while the run still went on."""
    ws = connect(server, f"/stream/session/{sess}/execute")
    try:
        ws.send(json.dumps({"mode": "query", "code": code, "options": options or {}}))
        first = (time.monotonic(), json.loads(ws.recv()))
        gate.touch()
        return [first] + frames(ws, replies)
    finally:
        ws.close()


def stdout(got) -> str:
    return "".join(d for _, f in got for k, d in f["console"] if k == "stdout")


@pytest.fixture(scope="module")
def sess(server):
    client = server.client()
    n = name()
    client.create_session("python", name=n)
    yield n
    client.destroy_session(n)


def test_frames_arrive_as_output_is_flushed(server, sess, tmp_path):
    # sent at once, not held until the end: the run waits for the first frame to arrive
    gate = tmp_path / "gate"
    got = gated_stream(server, sess, "print('a', flush=True)\n" + ks.gate_code(gate) + "print('b')", gate)
    assert len(got) >= 2
    assert all(set(f) == FRAME_KEYS for _, f in got)  # no runId, no cursor
    first = got[0][1]
    last = got[-1][1]
    assert first["status"] == "continued" and first["console"] == [["stdout", "a\n"]]
    assert last["status"] == "finished" and last["exitCode"] == 0 and last["files"] == []
    assert [f["status"] for _, f in got[:-1]] == ["continued"] * (len(got) - 1)
    assert all(f["console"] for _, f in got)  # empty continued results are not sent
    assert stdout(got) == "a\nb\n"


def test_v4_kernel_path(server, sess):
    got = stream(server, sess, "print('v4')", family="kernel")
    assert stdout(got) == "v4\n" and got[-1][1]["status"] == "finished"


def test_any_origin_is_allowed(server, sess):
    ws = connect(server, f"/stream/session/{sess}/execute", origin="https://elsewhere.example")  # signed anyway
    try:
        ws.send(json.dumps({"mode": "query", "code": "print('ok')"}))
        assert stdout(frames(ws)) == "ok\n"
    finally:
        ws.close()


def test_errors_in_query_mode(server, sess):
    got = stream(server, sess, "1/0")
    assert got[-1][1]["exitCode"] == 1
    assert "ZeroDivisionError" in "".join(d for _, f in got for k, d in f["console"] if k == "stderr")


def test_input_and_password(server, sess):
    got = stream(server, sess, "n = input('name? ')\nimport getpass\np = getpass.getpass()\nprint('hi', n, len(p))",
                 replies=["ada", "hunter2"])
    asks = [f for _, f in got if f["status"] == "waiting-input"]
    assert [a["options"] for a in asks] == [{"is_password": False}, {"is_password": True}]
    assert asks[0]["console"] == [["stdout", "name? "]] and asks[0]["exitCode"] is None
    assert stdout(got).endswith("hi ada 7\n") and got[-1][1]["status"] == "finished"


def test_input_sent_before_it_is_asked(server, sess):
    ws = connect(server, f"/stream/session/{sess}/execute")
    try:
        ws.send(json.dumps({"mode": "query", "code": "import time\ntime.sleep(0.3)\nprint(input() * 2)"}))
        ws.send("ab")  # queued until the run wants input
        got = frames(ws)
    finally:
        ws.close()
    assert [f["status"] for _, f in got][-2:] == ["waiting-input", "finished"]
    assert stdout(got) == "abab\n"


def test_jupyter_outputs_option(server, sess):
    got = stream(server, sess, "print(input('Q? '))\n6 * 7", options={"outputs": "jupyter"}, replies=["yes"])
    ask = next(f for _, f in got if f["status"] == "waiting-input")
    assert ask["options"]["prompt"] == "Q? "  # jupyter-outputs: the prompt is not in stdout
    kinds = [k for _, f in got for k, _ in f["console"]]
    assert kinds == ["stdout", "display"] and stdout(got) == "yes\n"


@pytest.mark.parametrize("first", [
    "not json",
    json.dumps([1, 2]),
    json.dumps({"code": "print(1)"}),
    json.dumps({"mode": "continue", "code": ""}),
    json.dumps({"mode": "query", "code": 5}),
    json.dumps({"mode": "query", "code": "", "options": []}),
    json.dumps({"mode": "query", "code": "", "options": {"allowStdin": "yes"}}),
    b"\x00binary",
], ids=["not-json", "array", "no-mode", "mode-continue", "code-int", "options-list", "allowStdin-str", "binary"])
def test_invalid_first_frame(server, sess, first):
    ws = connect(server, f"/stream/session/{sess}/execute")
    try:
        ws.send_binary(first) if isinstance(first, bytes) else ws.send(first)
        got = frames(ws)
    finally:
        ws.close()
    assert len(got) == 1
    frame = got[0][1]
    assert frame["status"] == "error" and frame["msg"].startswith("Invalid API parameters: ")


def problem(exc_info) -> tuple[int, str, str]:
    exc = exc_info.value
    headers = {k.lower(): v for k, v in (exc.resp_headers or {}).items()}
    return exc.status_code, headers.get("content-type", ""), json.loads(exc.resp_body)["type"]


def test_refusals_before_the_upgrade_are_problem_json(server, sess):
    base = protocol.PROBLEM_BASE
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, "/stream/session/no-such-session/execute")
    assert problem(info) == (404, protocol.PROBLEM_CONTENT_TYPE, base + "session-not-found")
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, "/stream/kernel/no-such-session/execute", version="v4.20190615")
    assert problem(info) == (404, protocol.PROBLEM_CONTENT_TYPE, base + "kernel-not-found")
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, f"/stream/session/{sess}/execute", secret="not-the-secret")
    assert problem(info) == (401, protocol.PROBLEM_CONTENT_TYPE, base + "auth-failed")
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, f"/stream/session/{sess}/execute", drop=("Authorization",))
    assert problem(info) == (401, protocol.PROBLEM_CONTENT_TYPE, base + "auth-failed")
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, f"/stream/session/{sess}/execute", drop=("X-BackendAI-Version",))
    assert problem(info) == (400, protocol.PROBLEM_CONTENT_TYPE, base + "generic-bad-request")
    # a signed GET without the upgrade
    r = server.signed_request("GET", f"/stream/session/{sess}/execute", content_type="text/plain")
    assert r.status_code == 400 and r.headers["Content-Type"] == protocol.PROBLEM_CONTENT_TYPE


def test_other_keys_session_is_not_found(server, sess):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, f"/stream/session/{sess}/execute", server.other_key, server.other_secret)
    assert problem(info) == (404, protocol.PROBLEM_CONTENT_TYPE, protocol.PROBLEM_BASE + "session-not-found")


def _start_sleeper(server, sess):
    ws = connect(server, f"/stream/session/{sess}/execute")
    ws.send(json.dumps({"mode": "query", "code": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"}))
    assert json.loads(ws.recv())["console"] == [["stdout", "sleeping\n"]]
    return ws


def _answers_promptly(server, sess):
    # not queued behind a 60 s sleep: the run ends within a (generous) 30 s
    client = server.client()
    result = client.execute(sess, "query", "print('after')")
    console = list(result["console"])
    deadline = time.monotonic() + 30
    while result["status"] != "finished":
        assert time.monotonic() < deadline, "the run waited behind the one that was left"
        result = client.execute(sess, "continue", "", result["runId"])
        console += result["console"]
    assert console == [["stdout", "after\n"]]


@pytest.mark.parametrize("how", ["close", "drop"])
def test_leaving_interrupts_the_run(server, sess, how):
    ws = _start_sleeper(server, sess)
    if how == "close":
        ws.close()  # a close frame
    else:
        ws.shutdown()  # the TCP connection just goes away
    _answers_promptly(server, sess)


def test_leaving_while_queued_drops_the_run(server, sess, tmp_path):
    gate = tmp_path / "gate"
    blocker = connect(server, f"/stream/session/{sess}/execute")
    blocker.send(json.dumps({"mode": "query", "code": "print('running', flush=True)\n" + ks.gate_code(gate)}))
    assert json.loads(blocker.recv())["console"] == [["stdout", "running\n"]]
    ws = connect(server, f"/stream/session/{sess}/execute")
    ws.send(json.dumps({"mode": "query", "code": "import pathlib\npathlib.Path('queued-ran').touch()"}))
    # The server has queued it once the pong is back: frames are read in order, and the run
    # is submitted by a task woken by the query frame, before anything that comes later.
    ws.ping()
    assert ws.recv_data(control_frame=True)[0] == websocket.ABNF.OPCODE_PONG
    ws.close()
    # an API round trip after the close: the server has dealt with the leaving client
    server.client().get_session(sess)
    gate.touch()
    try:
        got = frames(blocker)
    finally:
        blocker.close()
    assert got[-1][1]["exitCode"] == 0  # the running cell was not interrupted
    result = server.client().execute(sess, "query", "import os\nprint(os.path.exists('queued-ran'))")
    assert result["console"] == [["stdout", "False\n"]]  # the queued one never ran


def test_session_destroyed_mid_run(server):
    client = server.client()
    n = name()
    client.create_session("python", name=n)
    ws = _start_sleeper(server, n)
    try:
        client.destroy_session(n)
        got = frames(ws)
    finally:
        ws.close()
    assert got[-1][1]["status"] == "finished" and got[-1][1]["exitCode"] == protocol.EXIT_SESSION_VANISHED


def test_session_destroyed_while_waiting_for_input(server):
    client = server.client()
    n = name()
    client.create_session("python", name=n)
    ws = connect(server, f"/stream/session/{n}/execute")
    try:
        ws.send(json.dumps({"mode": "query", "code": "input('never answered: ')"}))
        assert json.loads(ws.recv())["status"] == "waiting-input"
        client.destroy_session(n)
        got = frames(ws)
    finally:
        ws.close()
    assert got[-1][1]["exitCode"] == protocol.EXIT_SESSION_VANISHED


def test_oversized_frame_closes_the_connection(server, sess):
    ws = connect(server, f"/stream/session/{sess}/execute")
    try:
        ws.send(json.dumps({"mode": "query", "code": "x" * (9 * 1024 * 1024)}))
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_CLOSE and data[:2] == (1009).to_bytes(2, "big")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass  # closed before the client read the close frame
    finally:
        ws.close()


def test_server_keeps_serving(server, sess):
    assert server.alive()
    assert stdout(stream(server, sess, "print('still here')")) == "still here\n"
    _answers_promptly(server, sess)


# -- a classic server (--no-extensions) ------------------------------------------------------


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("classic-root")), "--no-extensions")
    yield srv
    assert srv.stop() == 0
    with open(srv.stderr_path, encoding="utf-8", errors="replace") as log:
        assert "Traceback" not in log.read()


def test_classic_server_streams_the_same(classic, tmp_path):
    n = name()
    classic.client().create_session("python", name=n)
    gate = tmp_path / "gate"  # the first frame comes at once: the run waits for it
    got = gated_stream(classic, n, "print('a', flush=True)\n" + ks.gate_code(gate) + "print(input('Q? '))", gate,
                       options={"outputs": "jupyter", "allowStdin": False}, replies=["yes"])  # options ignored
    assert all(set(f) == FRAME_KEYS for _, f in got)
    assert got[0][1]["console"] == [["stdout", "a\n"]]
    ask = next(f for _, f in got if f["status"] == "waiting-input")
    assert ask["options"] == {"is_password": False} and ask["console"] == [["stdout", "Q? "]]
    assert stdout(got) == "a\nQ? yes\n" and got[-1][1]["status"] == "finished" and got[-1][1]["exitCode"] == 0


def test_server_stop_ends_open_streams(tmp_path):
    srv = start_server(str(tmp_path))
    try:
        n = name()
        srv.client().create_session("python", name=n)
        running = _start_sleeper(srv, n)
        idle = connect(srv, f"/stream/session/{n}/execute")  # no first frame yet
        srv.proc.send_signal(signal.SIGTERM)
        got = frames(running)  # the final frame of a destroyed session, then a normal close
        assert got[-1][1]["exitCode"] == protocol.EXIT_SESSION_VANISHED
        try:  # closed at the loop's end: the close frame may not make it out before the exit
            assert frames(idle) == []
        except websocket.WebSocketConnectionClosedException:
            pass
        assert srv.proc.wait(30) == 0
    finally:
        srv.stop()
    with open(srv.stderr_path, encoding="utf-8", errors="replace") as log:
        assert "Traceback" not in log.read()
