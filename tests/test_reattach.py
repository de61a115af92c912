"""Living with a long-lived remote: a kernel that keeps its session at shutdown, ``%remote
sessions``, and ``%remote attach`` after the previous kernel was killed mid-cell — the rest of
that cell's output arrives exactly once (bridges on the embedded server, through jupyter_client)."""

from __future__ import annotations

import re
import time

import psutil
import pytest

import kernel_support as ks
from remote_kernel.client import errors

pytestmark = pytest.mark.slow

KEEPING = "remote-keeping"
LINES = 10_000
HALF = LINES // 2


def counting(gate) -> str:
    """10,000 numbered lines in bursts of 50: the first half, then (once the test opened the
    gate, with no kernel attached) the second half."""
    burst = ("    print(''.join(f'n {j}\\n' for j in range(i, i + 50)), end='', flush=True)\n"
             "    time.sleep(0.01)\n")
    return ("import time\n"
            f"for i in range(0, {HALF}, 50):\n" + burst
            + ks.gate_code(gate)
            + f"for i in range({HALF}, {LINES}, 50):\n" + burst)


@pytest.fixture(scope="module")
def server(kernelspec_root):
    ks.write_kernelspec(kernelspec_root, name=KEEPING, extra_argv=["--RemoteKernel.keep_session=True"])
    with ks.start_server() as srv:
        yield srv


def session_name(kc) -> str:
    reply, outputs, _ = ks.execute(kc, "%remote info", timeout=90)
    assert reply["status"] == "ok", (reply, outputs)
    return re.search(r"^session: (\S+)$", ks.stdout_of(outputs), re.M).group(1)


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^n (\d+)$", text, re.M)]


def test_a_killed_kernels_cell_goes_on_in_the_next_kernel_exactly_once(server, tmp_path):
    gate = tmp_path / "gate"
    with ks.running_kernel(ks.server_env(server), name=KEEPING) as (km, kc):
        name = session_name(kc)
        msg_id = kc.execute(counting(gate))
        seen = ks.wait_for_output(kc, msg_id, f"n {HALF - 1}\n", timeout=60)
        # Kill the bridge once the server holds its acknowledgement of all it received: what a
        # frontend was shown but the server was not told of can only be sent twice (no bridge
        # can know what its frontend got after it died), so the test kills outside that window.
        with ks.api_client(server) as client:
            deadline = time.monotonic() + 30
            while True:  # a bounded poll of the server's own state: acknowledged up to its end?
                run = client.get_session(name).get("activeRun") or {}
                if run.get("cursor") == run.get("end") and run.get("state") == "running":
                    break
                assert time.monotonic() < deadline, run
                time.sleep(0.01)
        psutil.Process(km.provisioner.process.pid).kill()  # the bridge goes away mid-cell
        _, rest, _ = ks.collect(kc, msg_id, timeout=5)  # whatever it sent before it died
        first = numbers(ks.stdout_of(seen + rest))
    assert first == list(range(HALF))
    gate.write_text("")  # the cell goes on with no bridge attached: the server keeps its output

    with ks.running_kernel(ks.server_env(server)) as (km, kc):
        reply, outputs, _ = ks.execute(kc, f"%remote attach {name}", timeout=90)
        assert reply["status"] == "ok", (reply, outputs)
        text = ks.stdout_of(outputs)
        assert f"attached to the remote session {name}" in text
        second = numbers(text)
        reply, outputs, _ = ks.execute(kc, "print(i)")  # the same session: its variables are there
        assert ks.stdout_of(outputs) == f"{LINES - 50}\n"
    assert sorted(first + second) == list(range(LINES))  # nothing lost, nothing doubled


def test_a_kept_session_survives_its_kernel_and_is_listed(server):
    with ks.running_kernel(ks.server_env(server), name=KEEPING) as (km, kc):
        name = session_name(kc)
        reply, outputs, _ = ks.execute(kc, "%remote info")
        assert "kept at shutdown: yes" in ks.stdout_of(outputs)
        reply, _, _ = ks.execute(kc, "kept = 42")
    # the kernel shut down normally; the session stays
    with ks.running_kernel(ks.server_env(server)) as (km, kc):
        reply, outputs, _ = ks.execute(kc, "%remote sessions", timeout=90)
        assert reply["status"] == "ok", (reply, outputs)
        listed = [line for line in ks.stdout_of(outputs).splitlines() if name in line]
        assert listed and "RUNNING" in listed[0], ks.stdout_of(outputs)
        reply, outputs, _ = ks.execute(kc, f"%remote attach {name}\nprint(kept)")
        assert reply["status"] == "ok", (reply, outputs)
        assert ks.stdout_of(outputs).endswith("42\n")
    with ks.api_client(server) as client:  # attached without keep_session: ended with its kernel
        with pytest.raises(errors.SessionNotFound):
            client.get_session(name)


def test_without_keep_the_session_ends_with_its_kernel(server):
    with ks.running_kernel(ks.server_env(server)) as (km, kc):
        name = session_name(kc)
    with ks.api_client(server) as client:
        with pytest.raises(errors.SessionNotFound):
            client.get_session(name)


def test_a_reaped_session_is_said_so_and_the_cell_runs_in_a_new_one(kernelspec_root, tmp_path):
    """Real clusters end idle sessions; the bridge fakes no activity, and the next cell says what
    happened (and that variables are gone) instead of failing."""
    import time

    import server_fixture

    srv = server_fixture.start_server(str(tmp_path), "--idle-timeout", "2")
    try:
        with ks.running_kernel(ks.server_env(srv)) as (km, kc):
            reply, _, _ = ks.execute(kc, "x = 1", timeout=90)
            assert reply["status"] == "ok", reply
            name = session_name(kc)
            with ks.api_client(srv) as client:
                deadline = time.monotonic() + 60
                # a bounded poll of the server's own state (listing is no use of a session)
                while name in [s["sessionName"] for s in client.list_sessions()]:
                    assert time.monotonic() < deadline, "the idle session was never reaped"
                    time.sleep(0.2)
            reply, outputs, _ = ks.execute(kc, "print('x' in dir())", timeout=90)
            assert reply["status"] == "ok", (reply, outputs)
            assert ks.stdout_of(outputs) == "False\n"
            note = ks.stderr_of(outputs)
            assert "the remote session was gone (servers end sessions left idle" in note
            assert f"was {name}) was started" in note and "variables, imports, files) was lost" in note
    finally:
        srv.stop()
