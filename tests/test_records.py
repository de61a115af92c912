"""Pure parts of the embedded server: message → record translation and the run buffer."""

from __future__ import annotations

import asyncio
import base64

import pytest

from remote_kernel import protocol
from remote_kernel.server import records
from remote_kernel.server.runs import TRUNCATION_NOTICE, Run, amount

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def test_stream_and_unknown():
    assert records.translate("stream", {"name": "stdout", "text": "a"}, False) == [["stdout", "a"]]
    assert records.translate("stream", {"name": "weird", "text": "a"}, False) == []
    assert records.translate("status", {"execution_state": "busy"}, True) == []


@pytest.mark.parametrize("data,expected", [
    ({"image/png": PNG[:8] + "\n" + PNG[8:], "text/plain": "<Figure>"},
     ["media", ["image/png", "data:image/png;base64," + PNG]]),
    ({"image/svg+xml": "<svg/>", "image/png": PNG}, ["media", ["image/svg+xml", "<svg/>"]]),
    ({"text/html": "<b>x</b>", "text/plain": "x"}, ["html", "<b>x</b>"]),
    ({"text/plain": "42"}, ["stdout", "42\n"]),
    ({protocol.MIME_SORNA_DRAWING: "AAAA", "text/plain": "d"}, ["media", [protocol.MIME_SORNA_DRAWING, "AAAA"]]),
])
def test_classic_bundles(data, expected):
    assert records.translate("display_data", {"data": data, "metadata": {}}, False) == [expected]


def test_jupyter_display_is_lossless():
    content = {"data": {"text/plain": "1", "text/html": "<i>1</i>"}, "metadata": {"isolated": True},
               "execution_count": 7}
    [rec] = records.translate("execute_result", content, True)
    assert rec == ["display", {"output_type": "execute_result", "data": content["data"],
                               "metadata": {"isolated": True}, "transient": {}, "execution_count": 7}]
    update = records.translate("update_display_data",
                               {"data": {"text/plain": "2"}, "metadata": {}, "transient": {"display_id": "d"}}, True)
    assert update[0][1]["transient"] == {"display_id": "d"}
    # the drawing type becomes media even in jupyter mode
    assert records.translate("display_data", {"data": {protocol.MIME_SORNA_DRAWING: "x"}}, True)[0][0] == "media"


def test_errors_and_clear():
    content = {"ename": "ValueError", "evalue": "boom", "traceback": ["\x1b[31mValueError\x1b[0m: boom"]}
    assert records.translate("error", content, False) == [["stderr", "ValueError: boom\n"]]
    assert records.translate("error", content, True) == [["error", content]]
    assert records.translate("clear_output", {"wait": True}, True) == [["clear", {"wait": True}]]
    assert records.translate("clear_output", {"wait": True}, False) == []


def test_input_prompt():
    assert records.input_prompt({"prompt": "Name: ", "password": False}, False) == (
        [["stdout", "Name: "]], {"is_password": False})
    assert records.input_prompt({"prompt": "pw", "password": True}, True) == (
        [], {"is_password": True, "prompt": "pw"})


def test_kernel_died():
    assert records.kernel_died_records(False, "x") == []
    [[kind, data]] = records.kernel_died_records(True, "exit code 1")
    assert kind == "error" and data["ename"] == "KernelDied" and "exit code 1" in data["evalue"]


def run_sync(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_run_merges_only_undelivered_records():
    async def go():
        run = Run("r1", "query")
        run.add([["stdout", "a"], ["stdout", "b"], ["stderr", "c"], ["stdout", "d"]])
        first = run.result(None)
        assert first["console"] == [["stdout", "ab"], ["stderr", "c"], ["stdout", "d"]]
        assert first["cursor"] == 3 and first["status"] == "continued"
        run.add([["stdout", "e"]])  # must not merge into the delivered "d"
        second = run.result(None)
        assert second["console"] == [["stdout", "e"]] and second["cursor"] == 4
    run_sync(go())


def test_run_cursor_resend_is_idempotent():
    async def go():
        run = Run("r1", "query")
        run.add([["stdout", "a"], ["stderr", "b"]])
        lost = run.result(0)
        assert lost["cursor"] == 2
        again = run.result(0)  # the answer was lost: the same records again
        assert again["console"] == lost["console"]
        run.add([["stdout", "c"]])
        run.finish(0)
        final = run.result(2)
        assert final["console"] == [["stdout", "c"]] and final["status"] == "finished" and final["exitCode"] == 0
        assert run.result(2) == final  # still fetchable
    run_sync(go())


def test_run_markers_and_input():
    async def go():
        run = Run("r1", "batch")
        run.add([["stdout", "cleaning"]])
        run.phase(protocol.STATUS_CLEAN_FINISHED, 0)
        run.add([["stdout", "building"]])
        r = run.result(None)
        assert r["status"] == "clean-finished" and r["exitCode"] == 0 and r["console"] == [["stdout", "cleaning"]]
        run.wait_input({"is_password": False})
        r = run.result(None)
        assert r["status"] == "waiting-input" and r["options"] == {"is_password": False}
        assert r["console"] == [["stdout", "building"]]
    run_sync(go())


def test_run_buffer_keeps_head_and_tail_with_one_notice():
    async def go():
        run = Run("r1", "query", max_buffer=1000)
        for i in range(100):
            run.add([["stdout", f"{i:02d}" + "x" * 98]])
        first = run.result(None)
        head = "".join(d for k, d in first["console"] if k == "stdout")
        assert head.startswith("00x") and len(head) <= 1000
        assert not [d for k, d in first["console"] if k == "stderr"]  # the notice comes with the tail
        caught_up = run.result(None)  # acknowledges the head: the notice and the newest output, at once
        kinds = [k for k, _ in caught_up["console"]]
        assert kinds == ["stderr", "stdout"], caught_up["console"]
        notice, tail = caught_up["console"][0][1], caught_up["console"][1][1]
        assert notice.startswith(TRUNCATION_NOTICE.split(":")[0]) and "0 MiB" not in notice
        assert f"about {amount(100 * 100 - len(head) - len(tail))} of this run's output was dropped" in notice
        assert tail.endswith("99" + "x" * 98) and 0 < len(tail) <= 250
        run.add([["stdout", "again"]])
        assert run.result(None)["console"] == [["stdout", "again"]]
    run_sync(go())


def test_one_burst_larger_than_the_buffer_keeps_its_start_and_its_end():
    """34 MB in one chunk, then ``END``: the head, one notice saying how much was dropped, the
    tail ending with END — never the notice alone."""
    async def go():
        run = Run("r1", "query", max_buffer=1_000_000)
        run.add([["stdout", "x" * 34_000_000]])
        run.add([["stdout", "END\n"]])
        run.finish(0)
        console = run.result(None)["console"]
        assert [k for k, _ in console] == ["stdout", "stderr", "stdout"]
        head, notice, tail = (d for _, d in console)
        assert head == "x" * 750_000 and tail.endswith("xxEND\n") and len(tail) <= 250_000
        assert f"about {amount(34_000_004 - len(head) - len(tail))} " in notice and "MiB" in notice
    run_sync(go())


def test_truncated_output_reaches_an_input_prompt_and_stays_bounded():
    async def go():
        run = Run("r1", "query", max_buffer=4000)
        for round_ in range(20):  # nobody acknowledges anything: every round truncates again
            run.add([["stdout", "y" * 3000], ["stderr", f"prompt {round_}: "]])
            run.wait_input({"prompt": "", "password": False})
            unacked = sum(records.record_size(r) for r in run.result(0)["console"])
            notices = sum(len(d) for k, d in run.result(0)["console"] if "truncated" in d)
            assert unacked - notices <= 4000 + 12 * (round_ + 1), unacked  # the prompts are kept
            assert run.result(0)["console"][-1] == ["stderr", f"prompt {round_}: "]
            run.resume()
    run_sync(go())


async def settled(*tasks, rounds: int = 20) -> None:
    """Let the loop run every callback the tasks are owed (no timer is due in these tests)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_a_poll_answers_printed_text_at_once_and_other_output_after_its_window():
    """The default policy (text_coalesce 0, coalesce long): judged by events, not by time."""
    async def go():
        run = Run("r1", "query")
        run.start()
        poll = asyncio.ensure_future(run.wait(hold=60, coalesce=60, text_coalesce=0))
        await settled(poll)
        assert not poll.done()  # nothing yet: the hold
        run.add([["stdout", "tick\n"]])
        await settled(poll)
        assert poll.done()  # text: at once
        assert run.result(None)["console"] == [["stdout", "tick\n"]]

        poll = asyncio.ensure_future(run.wait(hold=60, coalesce=60, text_coalesce=0))
        run.add([["display", {"data": {"text/plain": "7"}}]])
        await settled(poll)
        assert not poll.done()  # other output: collected for its window (or until the end)
        run.add([["stderr", "warning\n"]])
        await settled(poll)
        assert poll.done()  # text came too: at once, with what waited
        assert [kind for kind, _ in run.result(None)["console"]] == ["display", "stderr"]

        poll = asyncio.ensure_future(run.wait(hold=60, coalesce=60))  # text_coalesce: as coalesce
        run.add([["stdout", "x"]])
        await settled(poll)
        assert not poll.done()
        run.finish(0)
        await settled(poll)
        assert poll.done() and run.result(None)["status"] == protocol.STATUS_FINISHED
    run_sync(go())


def test_output_after_the_reply_is_answered_with_the_end():
    """The engine replied (``replied``): what arrives now is the cell's last output, and the
    poll answers once, with it and the end, not the output at once and the end in a re-poll."""
    async def go():
        run = Run("r1", "query")
        run.start()
        poll = asyncio.ensure_future(run.wait(hold=60, coalesce=60, text_coalesce=0))
        run.replied()
        await settled(poll)
        assert not poll.done()
        run.add([["stdout", "the last line\n"]])
        await settled(poll)
        assert not poll.done()
        run.finish(0)
        await settled(poll)
        assert poll.done()
        result = run.result(None)
        assert result["status"] == protocol.STATUS_FINISHED and result["console"] == [["stdout", "the last line\n"]]
    run_sync(go())


def test_a_poll_waiting_for_input_or_a_batch_step_answers_at_once():
    async def go():
        run = Run("r1", "query")
        run.start()
        poll = asyncio.ensure_future(run.wait(hold=60, coalesce=60, text_coalesce=60))
        run.add([["stdout", "name? "]])
        await settled(poll)
        assert not poll.done()
        run.wait_input({"is_password": False, "prompt": ""})
        await settled(poll)
        assert poll.done() and run.result(None)["status"] == protocol.STATUS_WAITING_INPUT
        batch = Run("r2", "batch")
        batch.start()
        poll = asyncio.ensure_future(batch.wait(hold=60, coalesce=60, text_coalesce=60))
        batch.add([["stdout", "built\n"]])
        batch.phase(protocol.STATUS_BUILD_FINISHED, 0)
        await settled(poll)
        assert poll.done() and batch.result(None)["status"] == protocol.STATUS_BUILD_FINISHED
    run_sync(go())


def test_run_wait_rules():
    async def go():
        loop = asyncio.get_running_loop()
        run = Run("r1", "query")
        t = loop.time()
        await run.wait(hold=0.2, coalesce=0.01)  # nothing: the hold
        assert 0.18 <= loop.time() - t < 1
        loop.call_later(0.05, run.add, [["stdout", "x"]])
        t = loop.time()
        await run.wait(hold=5, coalesce=0.02)  # output: after the coalescing window
        assert loop.time() - t < 0.5
        run.result(None)
        loop.call_later(0.05, run.finish, 0)
        t = loop.time()
        await run.wait(hold=5, coalesce=0.02)  # finished: at once
        assert loop.time() - t < 0.5
    run_sync(go())
