"""The cell's policy (remote_kernel/kernel/cell.py) as pure unit tests: results, input answers,
interrupts and clock ticks in; actions out.  No kernel, no server, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remote_kernel import protocol
from remote_kernel.client import errors
from remote_kernel.kernel.cell import (
    SESSION_GONE, Abandon, AskInput, CancelInput, Cell, EndStream, Finish, ForgetSession, InterruptRemote, Publish,
    RestartRun, Send, UseRest, WaitUntil,
)
from remote_kernel.kernel.outputs import OutputContext

GRACE = 3.0


def new_cell(*, allow_stdin=True, silent=False) -> Cell:
    return Cell(execution_count=7, allow_stdin=allow_stdin, silent=silent, interrupt_grace=GRACE,
                endpoint="http://remote.example")


def begin(cell: Cell, *, mode=protocol.MODE_QUERY, code="print(1)", options=None, streaming=False,
          resumable=False) -> list:
    return cell.begin_run(mode, code, options or {}, outputs=OutputContext(), streaming=streaming,
                          resumable=resumable)


def result(status, *console, exit_code=None, **extra) -> dict:
    return {"runId": "r" * 32, "status": status, "exitCode": exit_code, "console": list(console), **extra}


def finished(*console, exit_code=0) -> dict:
    return result(protocol.STATUS_FINISHED, *console, exit_code=exit_code)


def waiting(prompt="") -> dict:
    return result(protocol.STATUS_WAITING_INPUT, options={"prompt": prompt, "is_password": False})


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def reply_of(actions) -> dict:
    assert isinstance(actions[-1], Finish), kinds(actions)
    return actions[-1].reply


def published(actions) -> list[tuple[str, dict]]:
    return [(a.msg_type, a.content) for a in actions if isinstance(a, Publish)]


# -- the plain loop ------------------------------------------------------------------------------

def test_a_query_sends_its_code_and_finishes_ok_with_its_output():
    cell = new_cell()
    [send] = begin(cell)
    assert isinstance(send, Send) and send.first
    assert send.body["mode"] == "query" and send.body["code"] == "print(1)"
    actions = cell.on_result(finished(["stdout", "1\n"]), now=0.0)
    assert published(actions) == [("stream", {"name": "stdout", "text": "1\n"})]
    assert reply_of(actions) == {"status": "ok", "execution_count": 7, "payload": [], "user_expressions": {}}


def test_continued_results_are_followed_by_continue_and_stream_text_is_flushed_per_result():
    cell = new_cell()
    begin(cell)
    actions = cell.on_result(result(protocol.STATUS_CONTINUED, ["stdout", "a"], ["stdout", "b"]), now=0.0)
    assert published(actions) == [("stream", {"name": "stdout", "text": "ab"})]
    assert isinstance(actions[-1], Send) and actions[-1].body["mode"] == "continue"
    assert not actions[-1].first


def test_resumable_runs_over_rest_only_the_websocket_carries_no_cursor():
    cell = new_cell()
    [send] = begin(cell, resumable=True)
    assert send.idempotent and len(send.body["runId"]) == 32
    cell = new_cell()
    [send] = begin(cell, resumable=True, streaming=True)
    assert not send.idempotent and send.body["runId"] is None


def test_a_silent_cell_publishes_nothing_but_still_replies_with_its_error():
    cell = new_cell(silent=True)
    begin(cell)
    actions = cell.on_result(finished(["stdout", "x"], exit_code=1), now=0.0)
    assert published(actions) == []
    assert reply_of(actions)["ename"] == "RemoteError"


@pytest.mark.parametrize("mode, exit_code, words", [
    (protocol.MODE_QUERY, 2, "the remote run exited with code 2"),
    (protocol.MODE_BATCH, 127, "the batch run exited with code 127 (the build failed)"),
    (protocol.MODE_BATCH, 1, "the batch run exited with code 1;"),
])
def test_a_non_zero_exit_is_one_error_that_says_which_run_failed(mode, exit_code, words):
    cell = new_cell()
    begin(cell, mode=mode, code="" if mode == protocol.MODE_BATCH else "x")
    actions = cell.on_result(finished(["stderr", "boom\n"], exit_code=exit_code), now=0.0)
    errors_shown = [content for msg_type, content in published(actions) if msg_type == "error"]
    assert len(errors_shown) == 1 and words in errors_shown[0]["evalue"]
    assert reply_of(actions)["status"] == "error"


def test_the_remotes_own_error_output_is_the_reply_and_is_shown_once():
    cell = new_cell()
    begin(cell)
    error = {"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["tb"]}
    actions = cell.on_result(finished(["error", error], exit_code=1), now=0.0)
    assert [m for m, _ in published(actions)] == ["error"]
    assert reply_of(actions)["ename"] == "ZeroDivisionError"


def test_exec_timeout_forgets_the_session_and_says_the_server_killed_the_run():
    cell = new_cell()
    begin(cell)
    actions = cell.on_result(result(protocol.STATUS_EXEC_TIMEOUT), now=0.0)
    assert any(isinstance(a, ForgetSession) for a in actions)
    assert reply_of(actions)["ename"] == "RemoteTimeout"


def test_exit_130_without_output_means_the_session_vanished_but_with_output_it_is_an_exit_code():
    cell = new_cell()
    begin(cell)
    actions = cell.on_result(finished(exit_code=130), now=0.0)
    assert any(isinstance(a, ForgetSession) for a in actions)
    assert reply_of(actions)["ename"] == "RemoteSessionLost"
    cell = new_cell()
    begin(cell)
    actions = cell.on_result(finished(["stdout", "partial"], exit_code=130), now=0.0)
    assert not any(isinstance(a, ForgetSession) for a in actions)
    assert reply_of(actions)["ename"] == "RemoteError"


# -- input -----------------------------------------------------------------------------------------

def test_input_is_asked_of_the_frontend_and_the_answer_sent_without_its_newline():
    cell = new_cell()
    begin(cell)
    actions = cell.on_result(result(protocol.STATUS_WAITING_INPUT, ["stdout", "before "],
                                    options={"prompt": "name? ", "is_password": True}), now=0.0)
    assert published(actions) == [("stream", {"name": "stdout", "text": "before "})]  # flushed first
    assert actions[-1] == AskInput("name? ", True)
    [send] = cell.on_input("Ada\n", now=1.0)
    assert send.body["mode"] == "input" and send.body["code"] == "Ada"


def test_input_without_stdin_stops_the_run_and_says_the_frontend_cannot_answer():
    cell = new_cell(allow_stdin=False)
    begin(cell)
    actions = cell.on_result(waiting(), now=0.0)
    assert kinds(actions) == ["InterruptRemote", "Send"] and actions[-1].body["mode"] == "continue"
    reply = reply_of(cell.on_result(finished(exit_code=0), now=0.2))
    assert reply["ename"] == "StdinNotImplementedError"
    assert "nbconvert" in reply["evalue"] and reply["evalue"].endswith("the remote run was interrupted")


def test_a_remote_that_keeps_waiting_is_polled_reinterrupted_each_second_and_given_up_on_after_grace():
    cell = new_cell(allow_stdin=False)
    begin(cell)
    cell.on_result(waiting(), now=0.0)  # stop asked at 0
    actions = cell.on_result(waiting(), now=0.1)
    assert actions == [WaitUntil(pytest.approx(0.1 + 0.2))]
    [send] = cell.on_tick(now=0.3)
    assert send.body["mode"] == "continue"
    actions = cell.on_result(waiting(), now=1.05)
    assert kinds(actions) == ["InterruptRemote", "Send"]
    actions = cell.on_result(waiting(), now=GRACE + 0.01)
    reply = reply_of(actions)
    assert reply["ename"] == "StdinNotImplementedError"
    assert f"did not stop within {GRACE:g} s" in reply["evalue"]


def test_a_streamed_run_waiting_for_input_without_stdin_is_ended_by_closing_the_connection():
    cell = new_cell(allow_stdin=False)
    begin(cell, streaming=True)
    actions = cell.on_result(waiting(), now=0.0)
    assert kinds(actions) == ["InterruptRemote", "EndStream", "Publish", "Finish"]
    assert reply_of(actions)["ename"] == "StdinNotImplementedError"


# -- interrupts ------------------------------------------------------------------------------------

def test_an_interrupt_while_input_is_asked_cancels_the_question_and_stops_the_run():
    cell = new_cell()
    begin(cell)
    assert isinstance(cell.on_result(waiting(), now=0.0)[-1], AskInput)
    assert cell.on_interrupt(now=0.5) == [CancelInput(), InterruptRemote()]
    actions = cell.on_input(None, now=0.6)  # the question was cancelled
    assert kinds(actions) == ["InterruptRemote", "Send"]
    reply = reply_of(cell.on_result(finished(exit_code=0), now=0.7))
    assert (reply["ename"], reply["evalue"]) == ("KeyboardInterrupt", "the remote run was interrupted")


def test_input_wanted_after_an_interrupt_is_not_asked_of_the_frontend():
    cell = new_cell()
    begin(cell)
    cell.on_interrupt(now=0.0)
    actions = cell.on_result(waiting(), now=0.1)
    assert not any(isinstance(a, AskInput) for a in actions)
    assert kinds(actions) == ["InterruptRemote", "Send"]


def test_interrupts_ask_the_remote_until_the_grace_time_then_give_up_waiting():
    cell = new_cell()
    begin(cell)
    assert cell.on_interrupt(now=10.0) == [CancelInput(), InterruptRemote()]
    assert cell.on_interrupt(now=10.0 + GRACE / 2) == [InterruptRemote()]
    assert cell.on_interrupt(now=10.0 + GRACE) == [CancelInput(), Abandon()]
    assert cell.abandoned
    actions = cell.on_abandoned()
    assert [m for m, _ in published(actions)] == ["error"]  # shown although the cell was given up on
    reply = reply_of(actions)
    assert reply["ename"] == "KeyboardInterrupt" and "http://remote.example" in reply["evalue"]


def test_an_interrupted_run_that_finishes_normally_is_a_keyboard_interrupt():
    cell = new_cell()
    begin(cell)
    cell.on_interrupt(now=0.0)
    actions = cell.on_result(finished(["stdout", "tail\n"], exit_code=0), now=0.1)
    assert published(actions)[0] == ("stream", {"name": "stdout", "text": "tail\n"})
    assert reply_of(actions)["ename"] == "KeyboardInterrupt"


def test_an_interrupt_before_the_code_reached_the_remote_ends_the_cell_without_sending():
    cell = new_cell()
    cell.on_interrupt(now=0.0)
    actions = begin(cell)
    assert not any(isinstance(a, Send) for a in actions)
    assert "before the cell reached the remote" in reply_of(actions)["evalue"]


def test_after_giving_up_late_results_and_answers_are_dropped_and_the_cell_ends():
    cell = new_cell()
    begin(cell)
    cell.on_shutdown()
    for actions in (cell.on_result(finished(["stdout", "late"]), now=0.0), cell.on_input("x", now=0.0),
                    cell.on_tick(now=0.0)):
        assert [m for m, _ in published(actions)] == ["error"]
        assert reply_of(actions)["ename"] == "KeyboardInterrupt"


# -- transport failures ------------------------------------------------------------------------------

def test_a_session_gone_before_the_first_answer_is_recreated_once_and_the_run_started_again():
    cell = new_cell()
    begin(cell)
    gone = errors.SessionNotFound(msg="no such session")
    assert cell.on_error(gone) == [ForgetSession(SESSION_GONE), RestartRun()]
    [send] = cell.restart_run(outputs=OutputContext(), streaming=False, resumable=False)
    assert send.first and send.body["code"] == "print(1)"
    actions = cell.on_error(gone)  # gone again: no second retry
    assert isinstance(actions[0], ForgetSession)
    assert reply_of(actions)["ename"] == "SessionNotFound"


def test_a_session_gone_after_the_remote_answered_is_never_run_twice():
    cell = new_cell()
    begin(cell)
    cell.on_result(result(protocol.STATUS_CONTINUED), now=0.0)
    actions = cell.on_error(errors.SessionNotFound(msg="no such session"))
    assert not any(isinstance(a, RestartRun) for a in actions)
    assert actions[0] == ForgetSession("the remote session vanished")
    assert reply_of(actions)["ename"] == "SessionNotFound"


def test_a_refused_websocket_hands_the_same_body_to_rest():
    cell = new_cell(allow_stdin=False)
    [first] = begin(cell, streaming=True)
    actions = cell.on_error(errors.StreamUnavailable("no such endpoint", lasting=True))
    assert actions == [UseRest(True), Send(first.body, idempotent=False)]
    # now over REST: input without stdin polls instead of closing a connection
    assert not any(isinstance(a, EndStream) for a in cell.on_result(waiting(), now=0.0))


def test_other_failures_end_the_cell_with_their_own_message():
    cell = new_cell()
    begin(cell)
    reply = reply_of(cell.on_error(errors.ConnectionFailed(msg="refused")))
    assert reply["ename"] == "ConnectionFailed"
    reply = reply_of(new_cell().on_error(errors.ConfigError("BACKEND_SECRET_KEY is missing")))
    assert reply["evalue"].startswith("remote_kernel configuration: ")


# -- every path ends -------------------------------------------------------------------------------

STEP = st.sampled_from(["continued", "waiting", "finished", "interrupt", "lost"])


@settings(max_examples=300, deadline=None)
@given(allow_stdin=st.booleans(), streaming=st.booleans(), steps=st.lists(STEP, max_size=40),
       answers=st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=40))
def test_any_conversation_ends_with_exactly_one_reply(allow_stdin, streaming, steps, answers):
    """Whatever the remote answers and whenever the user interrupts, the cell asks for input only
    when it may, and ends with one Finish within a bounded number of actions."""
    cell = new_cell(allow_stdin=allow_stdin)
    steps, answers = iter(steps), iter(answers)
    pending, now, finishes = list(begin(cell, streaming=streaming)), 0.0, 0
    for _ in range(400):
        if not pending:
            break
        action = pending.pop(0)
        now += 0.25
        if isinstance(action, Finish):
            finishes += 1
            assert not pending
        elif isinstance(action, Send):
            step = next(steps, "finished")
            if step == "interrupt":
                out = cell.on_interrupt(now)
                if any(isinstance(a, Abandon) for a in out):
                    pending = cell.on_abandoned()
                    continue
                step = "continued"
            if step == "lost":
                out = cell.on_error(errors.SessionNotFound(msg="gone"))
                if RestartRun() in out:
                    out = out[:-1] + cell.restart_run(outputs=OutputContext(), streaming=streaming, resumable=False)
                pending = out + pending
                continue
            answer = {"continued": result(protocol.STATUS_CONTINUED), "waiting": waiting(),
                      "finished": finished()}[step]
            pending = cell.on_result(answer, now) + pending
        elif isinstance(action, AskInput):
            assert allow_stdin and cell.interrupted_at is None
            pending = cell.on_input(next(answers, "x"), now) + pending
        elif isinstance(action, WaitUntil):
            assert action.deadline > now - 0.25
            pending = cell.on_tick(now) + pending
    assert finishes == 1


# -- our extensions: the inner kernel's own reply ----------------------------------------------------

def test_an_error_reply_without_an_error_output_is_replied_as_the_inner_kernel_replied():
    cell = new_cell()
    begin(cell)
    reply = {"status": "error", "ename": "UsageError", "evalue": "Line magic function `%nope` not found.",
             "traceback": []}
    actions = cell.on_result(result(protocol.STATUS_FINISHED, ["stderr", "UsageError: ...\n"], exit_code=1,
                                    options={"reply": reply}), now=0.0)
    assert [m for m, _ in published(actions)] == ["stream"]  # no error output of our own
    assert reply_of(actions) == {"execution_count": 7, **reply}


def test_without_the_inner_reply_a_non_zero_exit_still_gets_one_error():
    cell = new_cell()
    begin(cell)
    actions = cell.on_result(finished(exit_code=1), now=0.0)
    assert [m for m, _ in published(actions)] == ["error"]
