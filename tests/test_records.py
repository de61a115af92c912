"""Pure parts of the embedded server: message → record translation and the run buffer."""

from __future__ import annotations

import asyncio
import base64

import pytest

from remote_kernel import protocol
from remote_kernel.server import records
from remote_kernel.server.runs import Run, TRUNCATION_NOTICE

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


def test_run_buffer_is_bounded_with_one_notice():
    async def go():
        run = Run("r1", "query", max_buffer=1000)
        for _ in range(100):
            run.add([["stdout", "x" * 100]])
        r = run.result(None)
        text = "".join(d for k, d in r["console"] if k == "stdout")
        notices = [d for k, d in r["console"] if k == "stderr"]
        assert len(text) <= 1000 and len(notices) == 1 and "truncated" in notices[0]
        assert TRUNCATION_NOTICE.split(":")[0] in notices[0]
        run.result(None)  # acknowledges everything: output flows again
        run.add([["stdout", "again"]])
        assert run.result(None)["console"] == [["stdout", "again"]]
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
