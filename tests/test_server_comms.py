"""Our jupyter-comms extension on the embedded server (docs/PROTOCOL.md#our-extensions-jupyter-comms):
request ids chosen by the client, comm records in runs, the session's event stream between
cells, and the frontend's comm calls — driven over HTTP on loopback with the real client against
a real ``remote-kernel serve`` process (fixture ``server``)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid

import pytest

from remote_kernel import protocol
from remote_kernel.client import errors
from remote_kernel.client.loop import Done, Record
from remote_kernel.server.comms import EventLog
from server_fixture import start_server

pytestmark = pytest.mark.slow  # two servers, a session per test: some seconds in all

JUPYTER = {"outputs": "jupyter"}


def new_id(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def call(client, method: str, path: str, **kwargs):
    """A signed request through the client's transport (raises errors.APIError on 4xx/5xx)."""
    client.api_version  # negotiated before anything is signed
    return client.transport.request(method, path, **kwargs)


def events(client, sess: str, cursor: int, wait: float = 10.0) -> dict:
    response = call(client, "GET", f"/session/{sess}/events", params={"cursor": cursor, "wait": f"{wait:g}"},
                    timeout=(10, wait + 10))
    return response.json()


def send_comm(client, sess: str, msg_type: str, content: dict, msg_id: str | None = None,
              buffers: list[bytes] = (), metadata: dict | None = None) -> int:
    body = {"msg_type": msg_type, "content": content, "metadata": metadata or {},
            "buffers": [base64.b64encode(b).decode() for b in buffers]}
    if msg_id is not None:
        body["msgId"] = msg_id
    return call(client, "POST", f"/session/{sess}/comm", json=body).status_code


def run(client, sess: str, code: str, options: dict | None = None) -> tuple[list, Done]:
    found = list(client.run(sess, code, options=options))
    done = [e for e in found if isinstance(e, Done)]
    assert len(done) == 1, found
    return [(e.kind, e.data) for e in found if isinstance(e, Record)], done[0]


def stdout(records) -> str:
    return "".join(d for k, d in records if k == "stdout")


def comm_opens(records, model: str | None = None) -> list[dict]:
    return [d for k, d in records if k == "comm" and d["msg_type"] == "comm_open"
            and (model is None or d["content"]["data"]["state"].get("_model_name") == model)]


def poll_until(client, sess: str, cursor: int, predicate, timeout: float = 30) -> tuple[list, int, dict]:
    """Poll from ``cursor`` on until the events gathered satisfy ``predicate``: (events, the next
    cursor, the last answer's request as (cursor, answer))."""
    gathered: list = []
    deadline = time.monotonic() + timeout
    while True:
        answer = events(client, sess, cursor, wait=min(10.0, max(0.0, deadline - time.monotonic())))
        assert answer["dropped"] == 0, answer
        gathered += answer["events"]
        if predicate(gathered):
            return gathered, answer["cursor"], {"cursor": cursor, "answer": answer}
        if time.monotonic() > deadline:
            raise AssertionError(f"the events never came; got {gathered}")
        cursor = answer["cursor"]


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def a_session(client):
    name = "c-" + uuid.uuid4().hex[:10]
    client.create_session("python", name=name)
    yield name
    try:
        client.destroy_session(name)
    except errors.APIError:
        pass


@pytest.fixture(scope="module")
def shared(client):
    """One session for the tests that only need one to exist."""
    yield from a_session(client)


@pytest.fixture
def sess(client):
    """A fresh session per test: each has its own event stream, from cursor 0."""
    yield from a_session(client)


OBSERVE = """
slider.observe(lambda change: print("observed", change["new"]), names="value")
"""
SLIDER = """
import ipywidgets
slider = ipywidgets.IntSlider()
print("before", flush=True)  # stdout is buffered; comm messages are not
slider.value = 3
print(get_ipython().kernel.get_parent()["header"]["msg_id"])
"""


def slider_id(records) -> str:
    (opened,) = comm_opens(records, "IntSliderModel")
    return opened["content"]["comm_id"]


def test_advertised(client):
    assert protocol.EXT_JUPYTER_COMMS in client.server_info["extensions"]


def test_widget_comms_are_records_in_order(client, sess):
    msg_id = new_id("bridge")
    records, done = run(client, sess, SLIDER, {**JUPYTER, "comms": True, "msgId": msg_id})
    assert done.exit_code == 0
    # the cell's own parent is our request id
    assert stdout(records) == f"before\n{msg_id}\n"
    kinds = [k if k != "comm" else d["msg_type"] for k, d in records]
    assert kinds == ["comm_open"] * 3 + ["stdout", "comm_msg", "stdout"], kinds  # layout, style, slider
    for _kind, data in records[:3]:
        assert data["content"]["target_name"] == "jupyter.widget"
        assert data["buffers"] == [] and isinstance(data["metadata"], dict)
    comm_id = slider_id(records)
    update = records[4][1]
    assert update["content"]["comm_id"] == comm_id
    assert update["content"]["data"]["method"] == "update" and update["content"]["data"]["state"] == {"value": 3}
    # nothing of the run went to the event stream
    assert events(client, sess, 0, wait=0) == {"events": [], "cursor": 0, "dropped": 0}


def test_binary_buffers_both_ways(client, sess):
    """A comm target of the cell echoes what the frontend sends, buffers included."""
    code = """
import comm
def _opened(c, msg):
    c.on_msg(lambda m: c.send({"echo": m["content"]["data"]}, buffers=m["buffers"]))
comm.get_comm_manager().register_target("rk.echo", _opened)
out = comm.create_comm(target_name="rk.out", data={"hello": 1})
out.send({"bin": True}, buffers=[b"\\x00\\xffbin", b""])
"""
    records, _done = run(client, sess, code, {**JUPYTER, "comms": True, "msgId": new_id()})
    sent = [d for k, d in records if k == "comm" and d["msg_type"] == "comm_msg"]
    assert sent[0]["content"]["data"] == {"bin": True}
    assert [base64.b64decode(b) for b in sent[0]["buffers"]] == [b"\x00\xffbin", b""]

    comm_id = uuid.uuid4().hex
    assert send_comm(client, sess, "comm_open", {"comm_id": comm_id, "target_name": "rk.echo", "data": {}}) == 204
    msg_id = new_id("front")
    assert send_comm(client, sess, "comm_msg", {"comm_id": comm_id, "data": {"x": 1}}, msg_id=msg_id,
                     buffers=[b"\x01\x02\x03", bytes(range(256))]) == 204
    found, _cursor, _last = poll_until(client, sess, 0, lambda evs: any(e["parent"] == msg_id for e in evs))
    (echo,) = [e for e in found if e["parent"] == msg_id]
    assert echo["msg_type"] == "comm_msg" and echo["content"]["comm_id"] == comm_id
    assert echo["content"]["data"] == {"echo": {"x": 1}}
    assert [base64.b64decode(b) for b in echo["buffers"]] == [b"\x01\x02\x03", bytes(range(256))]
    assert set(echo) == {"seq", "msg_type", "parent", "content", "metadata", "buffers"}

    assert send_comm(client, sess, "comm_close", {"comm_id": comm_id, "data": {}}) == 204
    info = call(client, "POST", f"/session/{sess}/comm_info", json={"target_name": "rk.echo"}).json()
    assert comm_id not in info["comms"]


def test_events_between_cells(client, sess):
    records, _done = run(client, sess, SLIDER + OBSERVE, {**JUPYTER, "comms": True, "msgId": new_id()})
    comm_id = slider_id(records)
    late = new_id("late")
    code = """
import os, sys, threading, time
def later():
    while not os.path.exists("go"):  # the test uploads it once the run is over
        time.sleep(0.01)
    print("late output", flush=True)
    slider.value = 5  # its observer prints too
    sys.stdout.flush()
worker = threading.Thread(target=later)
worker.start()
print("started")
"""
    records, _done = run(client, sess, code, {**JUPYTER, "comms": True, "msgId": late})
    assert records == [("stdout", "started\n")]
    # the thread speaks once the run is over (an upload does not involve the kernel, so the
    # kernel's parent is still that cell: ipykernel sends a thread's output with the parent of
    # the latest request, as a cell run meanwhile would show)
    client.upload(sess, [("go", b"")])

    found, next_cursor, last = poll_until(client, sess, 0, lambda evs: len(evs) >= 3)
    assert [(e["msg_type"], e["parent"]) for e in found] == [("stream", late), ("comm_msg", late),
                                                               ("stream", late)], found
    assert [e["seq"] for e in found] == [0, 1, 2] and next_cursor == 3
    assert found[0]["content"] == {"name": "stdout", "text": "late output\n"}
    assert found[1]["content"]["comm_id"] == comm_id
    assert found[1]["content"]["data"]["state"] == {"value": 5}
    assert found[2]["content"] == {"name": "stdout", "text": "observed 5\n"}

    # an answer lost on the way: the same request gets the same events again
    assert events(client, sess, last["cursor"], wait=10) == last["answer"]
    # the next cursor acknowledges them: nothing new (wait=0 answers at once)
    assert events(client, sess, next_cursor, wait=0) == {"events": [], "cursor": next_cursor, "dropped": 0}

    # a waiting poll answers as soon as something comes (here: what a frontend's update prints)
    box = {}
    poller = threading.Thread(target=lambda: box.update(answer=events(client, sess, next_cursor, wait=30)))
    poller.start()
    front = new_id("front")
    send_comm(client, sess, "comm_msg", {"comm_id": comm_id, "data": {"method": "update", "state": {"value": 8}}},
              msg_id=front)
    poller.join(60)
    answer = box["answer"]
    assert answer["events"] and all(e["parent"] == front for e in answer["events"]), answer
    assert answer["events"][0]["seq"] == next_cursor and answer["dropped"] == 0
    assert answer["cursor"] == next_cursor + len(answer["events"])


def test_frontend_comm_msg_reaches_the_widget(client, sess):
    records, _done = run(client, sess, SLIDER + OBSERVE, {**JUPYTER, "comms": True, "msgId": new_id()})
    comm_id = slider_id(records)
    msg_id = new_id("front")
    status = send_comm(client, sess, "comm_msg", {"comm_id": comm_id, "data": {
        "method": "update", "state": {"value": 7}, "buffer_paths": []}}, msg_id=msg_id)
    assert status == 204

    def printed(evs):
        return any(e["msg_type"] == "stream" and "observed 7" in e["content"]["text"] for e in evs)
    found, _cursor, _last = poll_until(client, sess, 0, printed)
    mine = [e for e in found if e["msg_type"] == "stream"]
    assert mine and all(e["parent"] == msg_id for e in mine), found
    records, _done = run(client, sess, "print(slider.value)", {**JUPYTER, "msgId": new_id()})
    assert stdout(records) == "7\n"


def test_a_comm_msg_with_wait_is_answered_once_its_handler_is_done_and_says_where_its_events_end(client, sess):
    """What a bridge needs before it says idle: a frontend stops routing a request's outputs
    (an Output widget's capture) at idle, so they must all be there first."""
    records, _done = run(client, sess, SLIDER + OBSERVE, {**JUPYTER, "comms": True, "msgId": new_id()})
    comm_id = slider_id(records)
    start = events(client, sess, 0, wait=0)["cursor"]
    msg_id = new_id("front")
    answer = call(client, "POST", f"/session/{sess}/comm", json={
        "msg_type": "comm_msg", "msgId": msg_id, "wait": True, "content": {
            "comm_id": comm_id, "data": {"method": "update", "state": {"value": 5}, "buffer_paths": []}}}).json()
    assert answer["idle"] is True and answer["cursor"] > start
    got = events(client, sess, start, wait=0)
    assert got["cursor"] == answer["cursor"]  # nothing of the handler comes after the cursor
    assert any(e["msg_type"] == "stream" and "observed 5" in e["content"]["text"] and e["parent"] == msg_id
               for e in got["events"]), got
    with pytest.raises(errors.InvalidRequestError):
        call(client, "POST", f"/session/{sess}/comm", json={"msg_type": "comm_msg", "wait": "yes",
                                                             "content": {"comm_id": comm_id, "data": {}}})


def test_comm_info_lists_the_widgets(client, sess):
    records, _done = run(client, sess, SLIDER, {**JUPYTER, "comms": True, "msgId": new_id()})
    opened = {d["content"]["comm_id"] for d in comm_opens(records)}
    assert len(opened) == 3
    for target in ("jupyter.widget", None):
        answer = call(client, "POST", f"/session/{sess}/comm_info", json={"target_name": target}).json()
        assert answer["status"] == "ok"
        assert opened <= set(answer["comms"])
        assert all(answer["comms"][c] == {"target_name": "jupyter.widget"} for c in opened)
    answer = call(client, "POST", f"/session/{sess}/comm_info", json={"target_name": "no.such.target"}).json()
    assert answer == {"status": "ok", "comms": {}}


def test_without_the_options_nothing_changes(client, sess):
    for options in (None, JUPYTER, {"comms": True}):  # comms needs outputs: jupyter
        records, done = run(client, sess, SLIDER, options)
        assert done.exit_code == 0
        assert all(k == "stdout" for k, _d in records), records
        before, parent = stdout(records).splitlines()
        assert before == "before" and len(parent) >= 32  # a fresh id of the server's
    # comm messages no run asked for are events, once someone listens
    assert events(client, sess, 0, wait=0)["events"] == []  # turns the event stream on
    records, _done = run(client, sess, "slider.value = 9", JUPYTER)
    found, _cursor, _last = poll_until(client, sess, 0, lambda evs: bool(evs))
    assert found[0]["msg_type"] == "comm_msg" and found[0]["content"]["data"]["state"] == {"value": 9}


def test_over_the_websocket(client, sess):
    """The websocket's first frame carries the options as a REST query does."""
    from remote_kernel.client.stream import StreamRun

    msg_id = new_id("ws")
    console = []
    with StreamRun(client, sess) as stream:
        result = stream.exchange({"mode": "query", "code": SLIDER,
                                  "options": {**JUPYTER, "comms": True, "msgId": msg_id}})
        console += result["console"]
        while result["status"] != protocol.STATUS_FINISHED:
            result = stream.exchange({"mode": "continue"})
            console += result["console"]
    assert stdout([tuple(r) for r in console]) == f"before\n{msg_id}\n"
    assert len(comm_opens(console)) == 3
    with StreamRun(client, sess) as stream, pytest.raises(errors.InvalidRequestError, match="msgId"):
        stream.exchange({"mode": "query", "code": "1", "options": {"msgId": "no spaces"}})


def test_a_chosen_id_without_comms(client, sess):
    msg_id = new_id()
    records, _done = run(client, sess, SLIDER, {**JUPYTER, "msgId": msg_id})
    assert stdout(records) == f"before\n{msg_id}\n"
    assert not any(k == "comm" for k, _d in records)


@pytest.mark.parametrize("body", [
    {"msg_type": "execute_request", "content": {"comm_id": "x", "data": {}}},
    {"msg_type": "comm_msg"},
    {"msg_type": "comm_msg", "content": []},
    {"msg_type": "comm_msg", "content": {"data": {}}},
    {"msg_type": "comm_msg", "content": {"comm_id": "", "data": {}}},
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": 5}},
    {"msg_type": "comm_open", "content": {"comm_id": "x", "data": {}}},  # no target_name
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "metadata": []},
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "buffers": ["not base64!"]},
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "buffers": "AAAA"},
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "msgId": "has space"},
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "msgId": "x" * 129},
    {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "msgId": 5},
])
def test_bad_comm_bodies(server, shared, body):
    response = server.signed_request("POST", f"/session/{shared}/comm", body)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith(protocol.PROBLEM_CONTENT_TYPE)
    assert response.json()["type"].endswith("/invalid-api-params")


def test_bad_requests(server, client, shared):
    sess = shared
    def problem(method, path, body=None, status=400, slug="invalid-api-params"):
        response = server.signed_request(method, path, body)
        assert response.status_code == status, (path, response.text)
        assert response.headers["Content-Type"].startswith(protocol.PROBLEM_CONTENT_TYPE)
        assert response.json()["type"] == protocol.PROBLEM_BASE + slug, response.text
        return response.json()

    for query in ("cursor=-1", "cursor=abc", "cursor=1.5", "cursor=1&cursor=2", "wait=31", "wait=-1",
                  "wait=nan", "wait=inf", "wait=soon"):
        problem("GET", f"/session/{sess}/events?{query}")
    assert "beyond" in problem("GET", f"/session/{sess}/events?cursor=5&wait=0")["msg"]
    problem("POST", f"/session/{sess}/comm", b"{not json")
    problem("POST", f"/session/{sess}/comm_info", {"target_name": 5})
    for options in ({"msgId": "a b"}, {"msgId": ""}, {"msgId": "x" * 129}, {"msgId": 7}, {"comms": "yes"}):
        problem("POST", f"/session/{sess}", {"mode": "query", "code": "1", "runId": None,
                                              "options": {**JUPYTER, **options}})
    for method, path, body in (("GET", "/session/no-such-session/events?wait=0", None),
                               ("POST", "/session/no-such-session/comm",
                                {"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}}),
                               ("POST", "/session/no-such-session/comm_info", {"target_name": None})):
        problem(method, path, body, status=404, slug="session-not-found")
    # another key's session is not found either
    response = server.signed_request("GET", f"/session/{sess}/events?wait=0", access_key=server.other_key,
                                     secret_key=server.other_secret)
    assert response.status_code == 404


def test_destroying_the_session_ends_a_waiting_poll(server, client):
    """Whether the poll is in before the destroy or not, its answer is 404: a poll waiting
    on a session that goes is woken, and never answers 200 after its wait."""
    name = "c-" + uuid.uuid4().hex[:10]
    client.create_session("python", name=name)
    box = {}
    poller = threading.Thread(target=lambda: box.update(
        response=server.signed_request("GET", f"/session/{name}/events?wait=30", timeout=60)))
    poller.start()
    client.get_session(name)  # a round trip: the poll most likely waits by now
    client.destroy_session(name)
    poller.join(60)
    assert box["response"].status_code == 404, box["response"].text


def test_event_log_bound_and_cursor():
    """The bound drops the oldest and says so; acknowledged events are freed."""
    async def scenario():
        log = EventLog(max_events=3)
        log.add({"msg_type": "stream", "content": {"text": "ignored: not enabled"}})
        log.enable()
        for i in range(5):
            log.add({"msg_type": "stream", "parent_header": {"msg_id": "p"}, "content": {"text": str(i)},
                     "buffers": [b"\x00"]})
        log.add({"msg_type": "status", "content": {}})  # never logged
        answer = json.loads(await log.fetch(0, 0))
        assert [e["content"]["text"] for e in answer["events"]] == ["2", "3", "4"]
        assert answer["cursor"] == 5 and answer["dropped"] == 2
        assert answer["events"][0] == {"seq": 2, "msg_type": "stream", "parent": "p", "content": {"text": "2"},
                                       "metadata": {}, "buffers": ["AA=="]}
        assert json.loads(await log.fetch(3, 0))["events"][0]["seq"] == 3
        assert json.loads(await log.fetch(3, 0))["dropped"] == 0
        assert json.loads(await log.fetch(5, 0)) == {"events": [], "cursor": 5, "dropped": 0}
        waiter = asyncio.ensure_future(log.fetch(5, 10))
        await asyncio.sleep(0)
        log.add({"msg_type": "comm_msg", "content": {"comm_id": "c"}})
        assert json.loads(await asyncio.wait_for(waiter, 5))["cursor"] == 6
        waiter = asyncio.ensure_future(log.fetch(6, 10))
        await asyncio.sleep(0)
        log.close()
        assert await asyncio.wait_for(waiter, 5) is None
    asyncio.run(scenario())


def test_classic_server_has_none_of_it(tmp_path):
    srv = start_server(str(tmp_path), "--no-extensions")
    try:
        client = srv.client()
        assert protocol.EXT_JUPYTER_COMMS not in client.server_info["extensions"]
        name = "c-" + uuid.uuid4().hex[:10]
        client.create_session("python", name=name)
        msg_id = new_id()
        records, _done = run(client, name, "print(get_ipython().kernel.get_parent()['header']['msg_id'])",
                             {"msgId": msg_id, "comms": True})
        assert msg_id not in stdout(records)  # the option is dropped, as a real server ignores it
        for method, path in (("GET", f"/session/{name}/events"), ("POST", f"/session/{name}/comm"),
                             ("POST", f"/session/{name}/comm_info")):
            response = srv.signed_request(method, path, {} if method == "POST" else None)
            assert response.status_code == 404 and response.json()["type"].endswith("/url-not-found")
        client.destroy_session(name)
    finally:
        assert srv.stop() == 0


def test_listening_to_events_is_no_activity_an_idle_session_is_still_reaped(tmp_path):
    """A frontend that keeps its event poll open must not keep the session alive for ever."""
    srv = start_server(str(tmp_path), "--idle-timeout", "2")
    try:
        client = srv.client()
        name = "idle-" + uuid.uuid4().hex[:8]
        client.create_session("python", name=name)
        cursor, deadline = 0, time.monotonic() + 60
        with pytest.raises(errors.SessionNotFound):
            while time.monotonic() < deadline:  # each poll holds up to 1 s; the reaper ends it
                cursor = events(client, name, cursor, wait=1)["cursor"]
            pytest.fail("the session was never reaped while its events were polled")
    finally:
        srv.stop()
