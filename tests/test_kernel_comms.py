"""Comm messages through the bridge, as a frontend sees them (jupyter_client against the bridge
on the embedded server): kernel → frontend between cells, frontend → kernel with the handler's
output under the frontend's request, comm_info, and a server without our comms extension."""

from __future__ import annotations

import queue
import time

import pytest

import kernel_support as ks

pytestmark = pytest.mark.slow

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def kernel(kernelspec_root):
    with ks.start_server() as server:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            reply, _, _ = ks.execute(kc, "import ipywidgets as w", timeout=90)
            assert reply["status"] == "ok", reply
            yield kc


def iopub_until(kc, predicate, timeout: float = 30) -> list[dict]:
    """iopub messages until one satisfies ``predicate`` (returned last)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(msg)
        if predicate(msg):
            return seen
    raise TimeoutError(f"no such message within {timeout} s; saw {[m['msg_type'] for m in seen]}")


def slider(kc, name: str) -> str:
    """Create an IntSlider called ``name`` in the remote; its comm id (from the comm_open)."""
    reply, outputs, _ = ks.execute(kc, f"{name} = w.IntSlider()\nprint({name}.comm.comm_id)")
    assert reply["status"] == "ok", (reply, outputs)
    return ks.stdout_of(outputs).strip()


def send_comm_msg(kc, comm_id: str, state: dict) -> str:
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "update", "state": state,
                                                                   "buffer_paths": []}})
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def test_the_cells_comm_messages_arrive_with_the_cell_as_parent(kernel):
    kc = kernel
    msg_id = kc.execute("s0 = w.IntSlider(value=2)\ns0.value = 4")
    messages = iopub_until(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                           and m["parent_header"].get("msg_id") == msg_id)
    comms = [m for m in messages if m["msg_type"].startswith("comm_")]
    assert [m["msg_type"] for m in comms][:1] == ["comm_open"]
    assert comms[0]["content"]["target_name"] == "jupyter.widget"
    assert any(m["msg_type"] == "comm_msg" and m["content"]["data"].get("state", {}).get("value") == 4 for m in comms)
    assert all(m["parent_header"]["msg_id"] == msg_id for m in comms)


def test_a_frontend_update_reaches_the_remote_and_its_callback_output_comes_back_under_it(kernel):
    kc = kernel
    comm_id = slider(kc, "s1")
    reply, _, _ = ks.execute(kc, "s1.observe(lambda change: print('seen', change['new']), 'value')")
    assert reply["status"] == "ok"
    ks.drain_iopub(kc)
    sent = send_comm_msg(kc, comm_id, {"value": 7})
    messages = iopub_until(kc, lambda m: m["msg_type"] == "stream" and "seen 7" in m["content"]["text"])
    assert messages[-1]["parent_header"]["msg_id"] == sent  # the output of the request that caused it
    reply, outputs, _ = ks.execute(kc, "print(s1.value)")
    assert ks.stdout_of(outputs) == "7\n"


def test_between_cells_a_thread_updates_a_widget_and_the_frontend_hears_it(kernel, tmp_path):
    kc = kernel
    gate = tmp_path / "go"
    code = (
        "import os, threading, time\n"
        "bar = w.IntProgress(max=3)\n"
        "def later():\n"
        f"    while not os.path.exists({str(gate)!r}):\n"
        "        time.sleep(0.02)\n"
        "    bar.value = 3\n"
        "    print('done later', flush=True)\n"
        "threading.Thread(target=later).start()\n"
    )
    reply, _, _ = ks.execute(kc, code)
    assert reply["status"] == "ok"  # the cell is over; the thread waits for the gate
    gate.write_text("")
    messages = iopub_until(kc, lambda m: m["msg_type"] == "stream" and "done later" in m["content"]["text"])
    updates = [m for m in messages if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("state", {}).get("value") == 3]
    assert updates, [m["msg_type"] for m in messages]
    assert updates[0]["parent_header"].get("msg_type") == "execute_request"  # the cell that started it


def test_comm_info_lists_the_remote_widgets(kernel):
    kc = kernel
    comm_id = slider(kc, "s2")
    kc.comm_info(target_name="jupyter.widget")
    reply = kc.get_shell_msg(timeout=30)
    assert reply["msg_type"] == "comm_info_reply"
    assert reply["content"]["comms"][comm_id] == {"target_name": "jupyter.widget"}


def test_without_our_comms_extension_a_comm_open_is_closed_at_once_and_a_note_says_why(kernelspec_root):
    with ks.start_server(extensions=False) as server:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            reply, _, _ = ks.execute(kc, "pass", timeout=90)
            msg = kc.session.msg("comm_open", {"comm_id": "c-1", "target_name": "jupyter.widget", "data": {}})
            kc.shell_channel.send(msg)
            messages = iopub_until(kc, lambda m: m["msg_type"] == "comm_close")
            assert messages[-1]["content"]["comm_id"] == "c-1"
            assert messages[-1]["parent_header"]["msg_id"] == msg["header"]["msg_id"]
            kc.comm_info()
            assert kc.get_shell_msg(timeout=30)["content"]["comms"] == {}
            reply, outputs, _ = ks.execute(kc, "import ipywidgets as w\nw.IntSlider(value=3)")
            assert reply["status"] == "ok", (reply, outputs)
            shown = " ".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
            assert "IntSlider(value=3)" in shown  # the view falls back to text
            assert "widgets show as text here" in shown  # once per session
            reply, outputs, _ = ks.execute(kc, "1")
            assert "widgets show as text" not in str(outputs)
