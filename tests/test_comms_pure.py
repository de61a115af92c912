"""The pure parts of the bridge's comm handling (remote_kernel/kernel/comms.py)."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from remote_kernel.kernel.comms import (
    EventFollower, InnerMessage, ParentHeaders, comm_request, decode_buffers, encode_buffers, inner_message,
)


@given(st.lists(st.binary(max_size=64), max_size=5))
def test_buffers_survive_the_json_round_trip(buffers):
    assert decode_buffers(encode_buffers([memoryview(b) for b in buffers])) == tuple(buffers)


def test_malformed_buffers_are_refused_not_guessed():
    assert decode_buffers(["not base64!"]) is None
    assert decode_buffers("AAAA") is None


def test_an_event_becomes_the_message_to_publish():
    event = {"seq": 3, "msg_type": "comm_msg", "parent": "abc", "metadata": {"m": 1},
             "content": {"comm_id": "c1", "data": {"method": "update"}}, "buffers": [base64.b64encode(b"\x00").decode()]}
    assert inner_message(event) == InnerMessage("comm_msg", event["content"], {"m": 1}, (b"\x00",), "abc")


def test_events_the_frontend_has_no_use_for_or_malformed_are_skipped():
    assert inner_message({"msg_type": "status", "content": {"execution_state": "idle"}}) is None
    assert inner_message({"msg_type": "comm_msg", "content": {"data": {}}}) is None  # no comm_id
    assert inner_message({"msg_type": "stream", "content": "text"}) is None
    assert inner_message(["comm_msg"]) is None
    stream = inner_message({"msg_type": "stream", "content": {"name": "stdout", "text": "x"}, "parent": 7})
    assert stream is not None and stream.parent_id is None  # a non-string parent is no parent


def test_parent_headers_remember_recent_requests_and_forget_the_oldest():
    parents = ParentHeaders(limit=2)
    for n in range(3):
        parents.remember({"msg_id": f"m{n}", "msg_type": "execute_request"})
    assert parents.parent_of("m0") == {}
    assert parents.parent_of("m2") == {"header": {"msg_id": "m2", "msg_type": "execute_request"}}
    assert parents.parent_of(None) == {}


def test_a_forwarded_comm_message_keeps_the_frontends_msg_id():
    header = {"msg_id": "front-1", "msg_type": "comm_msg"}
    body = comm_request(header, {"comm_id": "c", "data": {}}, {}, [b"ab"])
    assert body == {"msg_type": "comm_msg", "msgId": "front-1", "content": {"comm_id": "c", "data": {}},
                    "metadata": {}, "buffers": ["YWI="]}


def test_the_follower_settles_what_it_delivered_before_its_next_poll():
    """``settle`` (the bridge: its IOPub thread sends what was published) comes after a batch
    was delivered and before the next long poll; a poll that brought nothing is not settled."""
    calls = []
    event = {"msg_type": "comm_msg", "parent": "p", "content": {"comm_id": "c1", "data": {}}, "buffers": []}

    class Client:
        def events(self, name, cursor, wait):
            calls.append(("poll", cursor))
            return {"events": [event, event], "cursor": 2} if cursor == 0 else {"events": [], "cursor": cursor}

        def close(self):
            pass

    follower = EventFollower(lambda: (Client, "s", 1), lambda message: calls.append("deliver"),
                             settle=lambda: calls.append("settle"))
    assert follower._poll_once() and follower._poll_once()
    assert calls == [("poll", 0), "deliver", "deliver", "settle", ("poll", 2)]
