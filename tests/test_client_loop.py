"""RunState over recorded result sequences (docs/PROTOCOL.md#the-execute-loop,
docs/PROTOCOL.md#our-extensions-resumable-runs)."""

from __future__ import annotations

import re

import pytest

from remote_kernel.client import errors
from remote_kernel.client.loop import Done, InputWanted, Record, RunState

RID = "9f" * 16


def test_query_continued_waiting_input_finished():
    state = RunState("query", code="x = input('name? ')\nprint('hi', x)")
    first = state.request()
    assert first == {"mode": "query", "code": "x = input('name? ')\nprint('hi', x)", "runId": None, "options": {}}

    events = state.handle({"runId": RID, "status": "continued", "exitCode": None, "console": []})
    assert events == [] and state.run_id == RID
    assert state.request() == {"mode": "continue", "code": "", "runId": RID, "options": {}}

    events = state.handle({"runId": RID, "status": "waiting-input", "exitCode": None,
                           "options": {"is_password": False}, "console": [["stdout", "name? "]]})
    assert events == [Record("stdout", "name? "), InputWanted("", False, {"is_password": False})]
    with pytest.raises(RuntimeError):
        state.request()
    state.reply("Ada\n")
    assert state.request() == {"mode": "input", "code": "Ada", "runId": RID, "options": {}}

    events = state.handle({"runId": RID, "status": "finished", "exitCode": 0,
                           "console": [["stdout", "hi Ada\n"], ["media", ["image/png", "data:image/png;base64,AA=="]],
                                       ["log", "ignored by consumers"], "garbage"]})
    assert events == [Record("stdout", "hi Ada\n"), Record("media", ["image/png", "data:image/png;base64,AA=="]),
                      Record("log", "ignored by consumers"), Done("finished", 0)]
    assert state.finished
    with pytest.raises(RuntimeError):
        state.request()


def test_batch_build_finished_then_finished():
    opts = {"clean": None, "build": "*", "exec": "python main.py"}
    state = RunState("batch", options=opts)
    assert state.request() == {"mode": "batch", "code": "", "runId": None, "options": opts}
    events = state.handle({"runId": RID, "status": "build-finished", "exitCode": 0,
                           "console": [["stdout", "built\n"]]})
    assert events == [Record("stdout", "built\n")]
    assert state.request()["mode"] == "continue" and state.request()["options"] == {}
    events = state.handle({"runId": RID, "status": "clean-finished", "exitCode": 0, "console": []})
    assert events == []
    events = state.handle({"runId": RID, "status": "finished", "exitCode": 127,
                           "console": [["stderr", "make: *** failed\n"]]})
    assert events == [Record("stderr", "make: *** failed\n"), Done("finished", 127)]


def test_exec_timeout_is_terminal():
    state = RunState("query", code="while True: pass")
    state.handle({"runId": RID, "status": "continued", "console": []})
    events = state.handle({"runId": RID, "status": "exec-timeout", "exitCode": None, "console": []})
    assert events == [Done("exec-timeout", None)] and state.finished


def test_api_v1_separate_fields():
    state = RunState("query", code="1")
    events = state.handle({"status": "finished", "stdout": "out", "stderr": "err",
                           "media": [["image/svg+xml", "<svg/>"]], "html": ["<b>x</b>"]})
    assert events == [Record("stdout", "out"), Record("stderr", "err"),
                      Record("media", ["image/svg+xml", "<svg/>"]), Record("html", "<b>x</b>"),
                      Done("finished", None)]


def test_password_and_prompt_options():
    state = RunState("query", code="getpass()")
    (event,) = state.handle({"runId": RID, "status": "waiting-input",
                             "options": {"is_password": True, "prompt": "Password: "}, "console": []})
    assert event == InputWanted("Password: ", True, {"is_password": True, "prompt": "Password: "})


def test_unknown_status_is_a_bad_response():
    state = RunState("query", code="1")
    with pytest.raises(errors.BadResponse, match="unknown execute status"):
        state.handle({"status": "continue", "console": []})


def test_resumable_generates_run_id_and_sends_cursor():
    state = RunState("query", code="1", resumable=True)
    first = state.request()
    assert re.fullmatch(r"[0-9a-f]{32}", first["runId"]) and state.idempotent
    rid = first["runId"]
    state.handle({"runId": rid, "status": "continued", "cursor": 2,
                  "console": [["stdout", "a"], ["stdout", "b"]]})
    assert state.request() == {"mode": "continue", "code": "", "runId": rid, "options": {"cursor": 2}}
    state.handle({"runId": rid, "status": "waiting-input", "cursor": 3, "options": {},
                  "console": [["stdout", "c"]]})
    state.reply("yes")
    assert state.request() == {"mode": "input", "code": "yes", "runId": rid, "options": {"cursor": 3}}


def test_resumable_replay_does_not_duplicate_records():
    state = RunState("query", code="1", resumable=True)
    rid = state.request()["runId"]
    result = {"runId": rid, "status": "continued", "cursor": 2, "console": [["stdout", "a"], ["stdout", "b"]]}
    assert state.handle(result) == [Record("stdout", "a"), Record("stdout", "b")]
    # the answer was lost, the same continue is re-sent, the server answers from cursor 2 again
    # — or, having not acknowledged anything, repeats records already seen plus new ones:
    assert state.handle(dict(result)) == []
    overlap = {"runId": rid, "status": "finished", "exitCode": 0, "cursor": 4,
               "console": [["stdout", "b"], ["stdout", "c"], ["stdout", "d"]]}
    assert state.handle(overlap) == [Record("stdout", "c"), Record("stdout", "d"), Done("finished", 0)]


def test_non_resumable_ignores_cursor():
    state = RunState("query", code="1")
    result = {"runId": RID, "status": "continued", "cursor": 1, "console": [["stdout", "a"]]}
    assert state.handle(result) == [Record("stdout", "a")]
    assert state.request()["options"] == {}


def test_reply_only_when_waiting():
    with pytest.raises(RuntimeError):
        RunState("query", code="1").reply("x")
    with pytest.raises(ValueError):
        RunState("continue")
