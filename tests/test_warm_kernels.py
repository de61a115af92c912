"""The server's warm pool (``--warm-kernels``): a Python session adopts a kernel that is already
running, in the session's own folder, and the pool refills, skips dead spares, serves nothing it
cannot serve exactly, and leaves no process or folder behind."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import psutil
import pytest

from _procs import live_descendants, survivors
from remote_kernel.client import Record
from server_fixture import start_server

pytestmark = pytest.mark.slow

PID_AND_CWD = "import os; print(os.getpid()); print(os.getcwd())"


def name() -> str:
    return "w-" + uuid.uuid4().hex[:10]


def stdout(client, session: str, code: str) -> str:
    events = client.run(session, code)
    return "".join(e.data for e in events if isinstance(e, Record) and e.kind == "stdout")


def kernels_of(srv) -> set[int]:
    return {p.pid for p in live_descendants(srv.pid) if "remote_kernel.lean_kernel" in " ".join(p.cmdline())}


def spares_of(srv) -> set[int]:
    """Kernels the server's log reports ready as spares, still running, not yet adopted."""
    with open(srv.stderr_path, encoding="utf-8", errors="replace") as log:
        ready = {int(pid) for pid in re.findall(r"spare kernel (\d+) ready", log.read())}
    return ready & kernels_of(srv)


def wait_for(predicate, timeout: float = 30.0):
    """A bounded poll of ``predicate`` (the server's log and process table send no event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


@pytest.fixture()
def warm_server(tmp_path):
    srv = start_server(str(tmp_path / "root"), "--warm-kernels", "1")
    try:
        yield srv
    finally:
        kids = live_descendants(srv.pid)
        assert srv.stop() == 0
        assert not survivors(kids, timeout=10), "a kernel (spare or not) outlived the server"
        assert not [p for p in os.listdir(tmp_path / "root") if p.startswith(".spare-")]


def test_a_python_session_adopts_the_running_spare_in_its_own_folder(warm_server, tmp_path):
    srv = warm_server
    spare = wait_for(lambda: spares_of(srv))
    assert len(spare) == 1
    with srv.client() as client:
        n = name()
        client.create_session("python:3.11", name=n)
        pid, cwd = stdout(client, n, PID_AND_CWD).split()
        assert {int(pid)} == spare  # no new kernel was started for it
        assert cwd == str(tmp_path / "root" / n)
        # the renamed folder is the session's: uploads land there, and its modules import
        client.upload(n, [("helper_mod.py", b"ANSWER = 42\n")])
        assert stdout(client, n, "import helper_mod; print(helper_mod.ANSWER)") == "42\n"
        # a restart launches the new kernel in the session's folder, not the spare's old one
        client.restart_session(n)
        assert stdout(client, n, PID_AND_CWD).split()[1] == str(tmp_path / "root" / n)
        # a replacement spare starts, in a fresh folder of its own
        refill = wait_for(lambda: spares_of(srv) - {int(pid)})
        assert len(refill) == 1
        client.destroy_session(n)
        assert not os.path.exists(tmp_path / "root" / n)


def test_the_replacement_spare_waits_until_no_cell_runs(warm_server, tmp_path):
    # Starting a kernel is half a second of CPU: it must not land on the new session's cells.
    import kernel_support as ks

    srv = warm_server
    first = wait_for(lambda: spares_of(srv))
    gate = tmp_path / "gate"
    with srv.client() as client:
        n = name()
        client.create_session("python", name=n)
        # the sleep is the subject: time for a spare started too early to show up; the check
        # comes while the cell still runs (it waits for the gate)
        code = "import time\ntime.sleep(3)\nprint('done', flush=True)\n" + ks.gate_code(gate)
        for event in client.run(n, code):
            if isinstance(event, Record) and "done" in event.data:
                assert kernels_of(srv) == first, "a spare started while the cell ran"
                gate.touch()
        assert gate.exists(), "the cell did not get to its end"
        refill = wait_for(lambda: spares_of(srv) - first, timeout=15)
        assert len(refill) == 1
        client.destroy_session(n)


def test_what_a_spare_cannot_serve_exactly_starts_cold(warm_server):
    srv = warm_server
    spare = wait_for(lambda: spares_of(srv))
    with srv.client() as client:
        n = name()
        client.create_session("python", name=n, environ={"RK_WARM_TEST": "set at creation"})
        out = stdout(client, n, "import os; print(os.getpid()); print(os.environ['RK_WARM_TEST'])")
        pid, value = out.split("\n", 1)
        assert int(pid) not in spare and value == "set at creation\n"
        assert spares_of(srv) >= spare  # the spare is still waiting
        client.destroy_session(n)


def exited(pid: int) -> bool:
    """Dead: a zombie its parent (the server) has not reaped yet, or gone."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("dead_before_create", [True, False])
def test_a_dead_spare_is_never_handed_out(warm_server, dead_before_create):
    """Killed while it waits (here: just before the create, whether or not the server has
    seen it exit yet), the spare is replaced: the session runs on a new kernel."""
    srv = warm_server
    (dead,) = wait_for(lambda: spares_of(srv))
    os.kill(dead, signal.SIGKILL)
    if dead_before_create:  # the server finds it dead when it looks: discarded, and replaced
        assert wait_for(lambda: exited(dead), 10)
    with srv.client() as client:
        n = name()
        client.create_session("python", name=n)
        pid = int(stdout(client, n, PID_AND_CWD).split()[0])
        assert pid != dead
        assert stdout(client, n, "print(6 * 7)") == "42\n"
        # the pool is full again, without waiting for another create
        assert wait_for(lambda: spares_of(srv) - {dead, pid}), "no new spare after a dead one"
        client.destroy_session(n)


def test_no_spare_without_warm_kernels(tmp_path):
    srv = start_server(str(tmp_path / "root"), "--warm-kernels", "0")
    try:
        # A pool's spare starts with the server: its process exists before the first answer.
        # A session no spare could serve (extra environment) brings only its own kernel.
        with srv.client() as client:
            n = name()
            client.create_session("python", name=n, environ={"RK_WARM_TEST": "cold"})
            pid = int(stdout(client, n, "import os; print(os.getpid())"))
            assert kernels_of(srv) == {pid}
            assert not spares_of(srv)
            client.destroy_session(n)
    finally:
        assert srv.stop() == 0
