"""``remote-kernel serve --slow-start SECONDS``: a stand-in for a real manager whose sessions take
time to start (docs/PROTOCOL.md#what-the-embedded-server-also-accepts).  A new session walks
PENDING, SCHEDULED, PREPARING and PULLING (``statusInfo`` a percentage there) over SECONDS and is
RUNNING, usable, only after them; ``enqueueOnly`` and the reuse of a starting session answer at
once; a call needing the kernel before then fails as on a real manager; a destroy stops the
start.  Without the switch a create never answers RUNNING before the session is usable."""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import websocket
from _procs import live_descendants
from server_fixture import start_server, stop_checked

from remote_kernel import protocol
from remote_kernel.client.auth import BackendAIAuth
from remote_kernel.client.loop import Record

# server processes and real kernels, seconds per session: the slow tier
pytestmark = pytest.mark.slow

SLOW = 3.0
WALK = ["PENDING", "SCHEDULED", "PREPARING", "PULLING", "RUNNING"]
STARTING = set(WALK[:-1])
PULLING_INFO = re.compile(r"pulling image python: (\d+)%")
BROKEN = "rk-test-broken"  # a kernelspec whose kernel exits at once


def new_name() -> str:
    return "slow-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    kernels = tmp_path_factory.mktemp("jupyter")
    spec = kernels / "kernels" / BROKEN
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": ["false", "{connection_file}"], "display_name": "exits at once", "language": "python"}))
    srv = start_server(str(tmp_path_factory.mktemp("slow-root")), "--slow-start", str(SLOW),
                       env={"JUPYTER_PATH": str(kernels)})
    yield srv
    stop_checked(srv)


@pytest.fixture()
def client(slow):
    return slow.client()


def follow(client, name: str, timeout: float = SLOW + 60) -> list[tuple[str, str]]:
    """Poll ``GET /session/{name}`` until the session is RUNNING or ERROR (bounded): every
    (status, statusInfo) seen, consecutive repeats dropped."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get_session(name)
        now = (info["status"], info["statusInfo"])
        if not seen or seen[-1] != now:
            seen.append(now)
        if now[0] in ("RUNNING", "ERROR"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{name} did not reach RUNNING in {timeout} s: {seen}")


def statuses(seen) -> list[str]:
    return [s for i, (s, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != s]


def stdout(client, name: str, code: str) -> str:
    """Run ``code`` to its end; its stdout."""
    return "".join(e.data for e in client.run(name, code) if isinstance(e, Record) and e.kind == "stdout")


def kernel_pids(srv) -> set[int]:
    return {p.pid for p in live_descendants(srv.pid)}


def connect(srv, path: str) -> websocket.WebSocket:
    """A websocket to ``path``, the upgrade GET signed like any API call."""
    http_url = srv.url + path
    prepared = requests.Request("GET", http_url).prepare()
    BackendAIAuth(srv.access_key, srv.secret_key, protocol.SERVER_API_VERSION)(prepared)
    headers = [f"{k}: {v}" for k, v in prepared.headers.items()]
    return websocket.create_connection("ws" + http_url[len("http"):], header=headers, timeout=30)


def test_enqueue_only_answers_pending_at_once_then_the_session_walks_to_running(slow, client):
    name = new_name()
    began = time.monotonic()
    ref = client.create_session("python", name, enqueue_only=True)
    assert time.monotonic() - began < SLOW / 2
    assert (ref.created, ref.status) == (True, "PENDING")
    seen = follow(client, name)
    took = time.monotonic() - began
    assert statuses(seen) == WALK, seen
    assert took >= SLOW * 0.95, (took, seen)
    infos = dict(seen)
    assert infos["PENDING"] == "waiting for resources"
    assert infos["SCHEDULED"] == "scheduled on agent local"
    assert infos["PREPARING"] == "preparing the container"
    pulling = [info for status, info in seen if status == "PULLING"]
    assert all(PULLING_INFO.fullmatch(info) for info in pulling), pulling
    percents = [int(PULLING_INFO.fullmatch(info).group(1)) for info in pulling]
    assert len(set(percents)) >= 3 and percents == sorted(percents), pulling
    assert seen[-1] == ("RUNNING", "")
    # RUNNING is usable: the first execute runs
    assert stdout(client, name, "print(6 * 7)") == "42\n"
    client.destroy_session(name)


def test_a_create_without_enqueue_only_is_held_until_running(slow, client):
    name = new_name()
    began = time.monotonic()
    ref = client.create_session("python", name)
    assert time.monotonic() - began >= SLOW * 0.95
    assert (ref.created, ref.status) == (True, "RUNNING")
    assert client.get_session(name)["statusInfo"] == ""
    assert stdout(client, name, "print('up')") == "up\n"
    client.destroy_session(name)


def test_reusing_a_starting_session_answers_its_status_at_once(slow, client):
    name = new_name()
    client.create_session("python", name, enqueue_only=True)
    for enqueue_only in (True, False):  # a held create too: a real manager does not wait here
        began = time.monotonic()
        ref = client.create_session("python", name, enqueue_only=enqueue_only)
        assert time.monotonic() - began < SLOW / 2
        assert ref.created is False and ref.status in STARTING, ref
    follow(client, name)
    ref = client.create_session("python", name)
    assert (ref.created, ref.status) == (False, "RUNNING")
    client.destroy_session(name)


def test_calls_on_a_starting_session_fail_as_on_a_real_manager(slow, client):
    name = new_name()
    client.create_session("python", name, enqueue_only=True)
    answer = slow.signed_request("POST", f"/session/{name}", {"mode": "query", "code": "1", "runId": None,
                                                             "options": {}})
    assert answer.status_code == 500
    assert answer.headers["Content-Type"].startswith(protocol.PROBLEM_CONTENT_TYPE)
    problem = answer.json()
    assert problem["type"].endswith("/kernel-execution-failed")
    assert "not running yet" in problem["msg"] and "PENDING" in problem["msg"], problem
    # the websocket: upgraded, then closed without a frame
    ws = connect(slow, f"/stream/session/{name}/execute")
    try:
        ws.send(json.dumps({"mode": "query", "code": "1", "options": {}}))
        opcode, _data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_CLOSE
    finally:
        ws.close()
    for method, path, body in [("POST", f"/session/{name}/interrupt", None),
                               ("POST", f"/session/{name}/complete", {"code": "pri", "options": {}}),
                               ("PATCH", f"/session/{name}", None),
                               ("POST", f"/session/{name}/files", {"path": "."}),
                               ("POST", f"/session/{name}/download_single", {"file": "x"}),
                               ("GET", f"/session/{name}/events", None)]:
        answer = slow.signed_request(method, path, body)
        assert 400 <= answer.status_code < 600, (path, answer.status_code)
        assert answer.headers["Content-Type"].startswith(protocol.PROBLEM_CONTENT_TYPE), path
        assert "not running yet" in answer.json()["msg"], (path, answer.text)
    assert client.logs(name) == ""  # the logs of a session starting: none yet
    assert client.get_session(name)["status"] in STARTING  # none of it harmed the start
    client.destroy_session(name)


def wait_until(client, name: str, predicate, timeout: float = SLOW + 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(client.get_session(name)):
        assert time.monotonic() < deadline, client.get_session(name)
        time.sleep(0.02)


def test_destroying_a_starting_session_stops_its_start(slow, client):
    before = kernel_pids(slow)
    at_once, mid_walk, mid_kernel_start, witness = (new_name() for _ in range(4))
    for name in (at_once, mid_walk, mid_kernel_start, witness):
        client.create_session("python", name, enqueue_only=True)
    assert client.destroy_session(at_once) == {"numQueriesExecuted": 0}
    wait_until(client, mid_walk, lambda info: info["status"] == "PULLING")
    client.destroy_session(mid_walk)
    # at 100 % the kernel is starting
    wait_until(client, mid_kernel_start, lambda info: info["statusInfo"].endswith(": 100%"))
    client.destroy_session(mid_kernel_start)
    for name in (at_once, mid_walk, mid_kernel_start):
        answer = slow.signed_request("GET", f"/session/{name}")
        assert answer.status_code == 404 and answer.json()["type"].endswith("/session-not-found")
    # the witness started with them: once it runs, their kernels would have been launched too
    assert follow(client, witness)[-1][0] == "RUNNING"
    new = kernel_pids(slow) - before
    assert len(new) == 1, new  # the witness's kernel alone
    client.destroy_session(witness)


def test_a_failed_start_is_error_and_fails_a_held_create(slow, client):
    name = new_name()
    ref = client.create_session(BROKEN, name, enqueue_only=True)
    assert ref.status == "PENDING"
    seen = follow(client, name)
    assert statuses(seen) == WALK[:-1] + ["ERROR"], seen
    assert seen[-1] == ("ERROR", f"the {BROKEN!r} kernel did not start")
    answer = slow.signed_request("POST", f"/session/{name}", {"mode": "query", "code": "1", "options": {}})
    assert answer.status_code == 500 and answer.json()["type"].endswith("/kernel-execution-failed")
    # a held create of a start that fails: 500 kernel-creation-failed (the ERROR session is replaced)
    answer = slow.signed_request("POST", "/session", {"name": name, "image": BROKEN}, timeout=SLOW + 60)
    assert answer.status_code == 500 and answer.json()["type"].endswith("/kernel-creation-failed"), answer.text
    client.destroy_session(name)


def test_enqueue_only_must_be_a_boolean(slow):
    answer = slow.signed_request("POST", "/session", {"name": new_name(), "image": "python", "enqueueOnly": "yes"})
    assert answer.status_code == 400 and answer.json()["type"].endswith("/invalid-api-params")


def test_slow_start_must_be_a_number_of_seconds():
    for value in ("-1", "nan", "7200"):
        with pytest.raises(RuntimeError, match="--slow-start must be from 0 to 3600"):
            start_server(None, "--slow-start", value)


def test_without_the_switch_a_held_create_destroyed_by_name_while_starting_fails(tmp_path):
    """A client that gave up on its create destroys the session by name: the start stops, the
    held create answers 500 kernel-creation-failed, no kernel is left."""
    srv = start_server(str(tmp_path), "--warm-kernels", "0")
    try:
        client, name = srv.client(), new_name()
        before = kernel_pids(srv)
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(srv.signed_request, "POST", "/session", {"name": name, "image": "python"})
            deadline = time.monotonic() + 30
            while True:  # a session starting is seen by GET
                answer = srv.signed_request("GET", f"/session/{name}")
                if answer.status_code == 200:
                    break
                assert answer.status_code == 404 and not held.done() and time.monotonic() < deadline
                time.sleep(0.005)
            assert (answer.json()["status"], answer.json()["statusInfo"]) == ("PENDING", "")
            client.destroy_session(name)
            answer = held.result(60)
        assert answer.status_code == 500 and answer.json()["type"].endswith("/kernel-creation-failed"), answer.text
        assert kernel_pids(srv) == before
    finally:
        stop_checked(srv)


def test_without_the_switch_enqueue_only_never_answers_running_before_usable(tmp_path):
    srv = start_server(str(tmp_path), "--warm-kernels", "0")  # a cold kernel start each time
    try:
        client = srv.client()
        for _ in range(3):
            name = new_name()
            ref = client.create_session("python", name, enqueue_only=True)
            assert ref.created is True
            if ref.status != "RUNNING":
                assert follow(client, name)[-1][0] == "RUNNING"
            info = client.get_session(name)
            assert (info["status"], info["statusInfo"]) == ("RUNNING", "")
            assert stdout(client, name, "print('at once')") == "at once\n"
            client.destroy_session(name)
    finally:
        stop_checked(srv)
