"""A session that takes time to start, as on a real cluster (the embedded server's --slow-start
walks PENDING → SCHEDULED → PREPARING → PULLING → RUNNING like a real manager): the waiting
cell shows its progress in one display, nothing runs before RUNNING, a short read timeout does
not fail the first cell, and a kernel shut down meanwhile leaves no session behind."""

from __future__ import annotations

import tempfile
import time

import psutil
import pytest

import kernel_support as ks
import server_fixture
from _procs import live_descendants, survivors
from remote_kernel.client import errors
from remote_kernel.kernel.remote_session import RemoteSession

pytestmark = pytest.mark.slow

SLOW = 4  # seconds a session takes to start


@pytest.fixture(scope="module")
def slow_server():
    srv = server_fixture.start_server(tempfile.mkdtemp(prefix="rk-slow-"), "--slow-start", str(SLOW))
    yield srv
    srv.stop()


def test_the_first_cell_shows_the_start_in_one_display_then_runs(slow_server, kernelspec_root):
    env = dict(ks.server_env(slow_server), BACKEND_READ_TIMEOUT="1")  # far shorter than the start
    with ks.running_kernel(env) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "print('ran')", timeout=90)
    assert reply["status"] == "ok", (reply, outputs)
    displays = [o for o in outputs if o["msg_type"] in ("display_data", "update_display_data")
                and o.get("transient", {}).get("display_id", "").startswith("remote-kernel-startup-")]
    assert displays and displays[0]["msg_type"] == "display_data"
    assert {o["transient"]["display_id"] for o in displays} == {displays[0]["transient"]["display_id"]}
    texts = [o["data"]["text/plain"] for o in displays]
    statuses = {status for text in texts for status in ("PENDING", "SCHEDULED", "PREPARING", "PULLING")
                if f": {status}" in text}
    assert len(set(texts)) >= 3 and len(statuses) >= 2, texts
    assert any("pulling image python" in text for text in texts), texts
    assert "RUNNING after" in texts[-1]
    assert ks.stdout_of(outputs) == "ran\n"
    # the progress came before the cell ran
    assert outputs.index(displays[-1]) < max(i for i, o in enumerate(outputs) if o["msg_type"] == "stream")


def test_a_reused_session_still_starting_is_waited_for_never_used_before_it_runs(slow_server):
    with ks.api_client(slow_server) as client:
        ref = client.create_session("python", name="rk-starting-1", enqueue_only=True)
        assert ref.status == "PENDING"
    config = ks.api_client(slow_server).config
    remote = RemoteSession(config, "python")
    remote.name = "rk-starting-1"  # the name a previous create (that got no answer) asked for
    try:
        seen = []
        ref = remote.ensure(timeout=60, on_wait=lambda status: seen.append(status and status.status))
        assert ref.created is False and {"PENDING", "PULLING"} & set(seen)
        result = remote.client().execute(remote.name, "query", "print(6 * 7)", options={})
        assert result["status"] in ("finished", "continued")  # it runs: no 500 of a session not running
    finally:
        remote.destroy(10)
        remote.close()


def test_a_kernel_shut_down_while_its_session_starts_leaves_nothing_behind(slow_server, kernelspec_root):
    kernels_before = {p.pid for p in live_descendants(slow_server.pid)}
    with ks.running_kernel(ks.server_env(slow_server)) as (km, kc):
        msg_id = kc.execute("print('never needed')")
        ks.wait_for_iopub(kc, msg_id, lambda m: m["msg_type"] == "display_data", timeout=30)  # it waits
    # shut down mid-start: the session asked for is destroyed by name, its kernel never lingers
    with ks.api_client(slow_server) as client:
        names = [s["sessionName"] for s in client.list_sessions()]
    assert not [n for n in names if n.startswith("jupyter-")], names
    left = [p for p in live_descendants(slow_server.pid) if p.pid not in kernels_before]
    assert not survivors(left, timeout=15)


def test_a_session_that_ends_before_it_runs_is_a_clear_error(slow_server):
    config = ks.api_client(slow_server).config
    remote = RemoteSession(config, "python")
    try:
        remote.start()
        deadline = time.monotonic() + 30
        # a bounded poll of the bridge's own view of the start (no event tells it)
        while remote.startup is None or remote.startup.status not in ("PENDING", "SCHEDULED", "PREPARING"):
            assert time.monotonic() < deadline, remote.startup
            time.sleep(0.02)
        with ks.api_client(slow_server) as client:  # someone ends it while it starts
            client.destroy_session(remote.name)
        with pytest.raises((errors.APIError,)) as caught:
            remote.ensure(timeout=60)
        assert remote.name in str(caught.value) or "not found" in str(caught.value).lower()
    finally:
        remote.close()
    assert psutil.pid_exists(slow_server.pid)  # the server lives on


def test_remote_info_while_the_session_starts_says_how_far_it_is_without_waiting(slow_server, kernelspec_root):
    with ks.running_kernel(ks.server_env(slow_server)) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "%remote info", timeout=SLOW / 2)  # sooner than the start
        assert reply["status"] == "ok", (reply, outputs)
        text = ks.stdout_of(outputs)
        assert "session id: (not created)" in text and "waiting for: " in text, text
        assert any(f"status: {s}" in text for s in ("REQUESTED", "PENDING", "SCHEDULED", "PREPARING", "PULLING")), text
