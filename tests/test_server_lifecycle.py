"""Server lifecycle against the real ``remote-kernel serve`` process and real kernels:
``--no-extensions``, ``--parent-pid`` with keys from the environment, bounded shutdown on
SIGTERM whatever a cell does, DELETE/PATCH of a session that runs or waits for input, no
kernel process left behind, and ``--session-cwd``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import requests

from _procs import live, live_descendants
from remote_kernel import protocol
from server_fixture import start_server

# server processes started, signalled and reaped: the slow tier
pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "remote_kernel", "serve"]
# where a test counts the server's kernel processes, no spare kernel (test_warm_kernels.py) may
# come and go meanwhile
COUNTED = ("--warm-kernels", "0")


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendant processes of ``pid``."""
    return {p.pid for p in live_descendants(pid)}


def alive(pids) -> set[int]:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return {p.pid for p in live(procs)}


def wait_for(predicate, timeout: float, period: float = 0.1) -> bool:
    """A bounded poll of ``predicate``: for process counts and the like, which send no event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


def run_until(client, name: str, code: str, statuses: tuple[str, ...], options=None) -> dict:
    """Start ``code`` and continue until the run reports one of ``statuses`` (or finishes);
    the last result, with the console records of all results."""
    result = client.execute(name, protocol.MODE_QUERY, code, options=options)
    console = list(result["console"])
    deadline = time.monotonic() + 60
    while result["status"] not in statuses + (protocol.STATUS_FINISHED,):
        assert time.monotonic() < deadline, result
        result = client.execute(name, protocol.MODE_CONTINUE, run_id=result["runId"])
        console.extend(result["console"])
    return dict(result, console=console)


def run_until_output(client, name: str, code: str, marker: str) -> dict:
    """Start ``code`` and continue until its output contains ``marker`` (the cell got there)."""
    result = client.execute(name, protocol.MODE_QUERY, code)
    console = list(result["console"])
    deadline = time.monotonic() + 60
    while not any(marker in data for _, data in console):
        assert result["status"] != protocol.STATUS_FINISHED and time.monotonic() < deadline, result
        result = client.execute(name, protocol.MODE_CONTINUE, run_id=result["runId"])
        console.extend(result["console"])
    return dict(result, console=console)


def kill_leftovers(pids) -> None:
    for pid in alive(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("lifecycle-root")), *COUNTED)
    kids = set()
    try:
        yield srv
    finally:
        kids = descendants(srv.pid)
        code = srv.stop()
        survivors = alive(kids)
        kill_leftovers(survivors)
    assert code == 0
    assert not survivors, f"kernel processes survived the server: {survivors}"


# ---- 1. --no-extensions ----------------------------------------------------------------------

def test_no_extensions_behaves_as_classic_server(tmp_path):
    srv = start_server(str(tmp_path), "--no-extensions")
    try:
        info = requests.get(srv.url + "/", timeout=10).json()
        assert info["extensions"] == []
        client = srv.client()
        assert not client.extensions
        client.create_session("python", name="classic")
        # the jupyter-outputs opt-in is ignored: rich output and errors come back as classic records
        result = run_until(client, "classic", "from IPython.display import HTML\n"
                           "display(HTML('<b>x</b>'))\n1/0",
                           (), options={"outputs": "jupyter", "allowStdin": False, "cursor": 0})
        kinds = [record[0] for record in result["console"]]
        assert "display" not in kinds and "error" not in kinds, result
        assert ["html", "<b>x</b>"] in result["console"], result
        assert any(k == "stderr" and "ZeroDivisionError" in d for k, d in result["console"]), result
        assert "cursor" not in result
        # input prompts go to stdout, and allowStdin: false does not refuse input
        result = run_until(client, "classic", "x = input('Name? ')", (protocol.STATUS_WAITING_INPUT,),
                           options={"outputs": "jupyter", "allowStdin": False})
        assert result["status"] == protocol.STATUS_WAITING_INPUT, result
        assert ["stdout", "Name? "] in result["console"], result
        assert "prompt" not in (result["options"] or {})
        result = client.execute("classic", protocol.MODE_INPUT, "bob", run_id=result["runId"])
        while result["status"] != protocol.STATUS_FINISHED:
            result = client.execute("classic", protocol.MODE_CONTINUE, run_id=result["runId"])
        assert run_until(client, "classic", "print(x)", ())["console"] == [["stdout", "bob\n"]]
        # the extension-only endpoints are not there
        answer = srv.signed_request("POST", "/session/classic/inspect", {"code": "x", "cursor_pos": 1})
        assert answer.status_code == 404
        # complete's Jupyter form is ignored: the classic answer comes back
        completed = client.complete("classic", "pri", {"jupyter": True, "cursor_pos": 3})
        assert completed.get("status") == "finished" and "print" in completed.get("completions", []), completed
    finally:
        assert srv.stop() == 0


def test_extensions_listed_by_default(server):
    info = requests.get(server.url + "/", timeout=10).json()
    assert set(info["extensions"]) == {protocol.EXT_JUPYTER_OUTPUTS, protocol.EXT_RESUMABLE_RUNS,
                                       protocol.EXT_JUPYTER_COMMS, protocol.EXT_IMAGE_LIST,
                                       protocol.EXT_SESSION_LIST}


# ---- 2. --parent-pid, keys from the environment ------------------------------------------------

def test_parent_pid_exit_and_environment_keys(tmp_path):
    access, secret = "AKPAR" + uuid.uuid4().hex[:8].upper(), "parent-secret-" + uuid.uuid4().hex
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    env = dict(os.environ, BACKEND_ACCESS_KEY=access, BACKEND_SECRET_KEY=secret)
    proc = subprocess.Popen(SERVE + ["--port", "0", "--root", str(tmp_path), "--parent-pid", str(parent.pid)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    kernels: set[int] = set()
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), url
        assert proc.stdout.readline().strip() == "access key: " + access
        assert secret not in " ".join(psutil.Process(proc.pid).cmdline())
        from remote_kernel.client import APIConfig, Client
        with Client(APIConfig(endpoint=[url], access_key=access, secret_key=secret)) as client:
            client.create_session("python", name="orphan")
            client.execute("orphan", protocol.MODE_QUERY, "import time; time.sleep(60)")
            kernels = descendants(proc.pid)
            assert kernels
            # the subject: time passes (over a parent check, every PARENT_CHECK_PERIOD = 1 s)
            # while the parent lives; no event can show that the server did not exit
            time.sleep(1.5)
            assert proc.poll() is None, "the server exited while its parent lives"
            parent.kill()  # not reaped: a zombie parent counts as gone too
            proc.wait(30)  # a server that missed it would live on (TimeoutExpired)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        parent.kill()
        parent.wait()
        survivors = alive(kernels)
        kill_leftovers(survivors)
    assert proc.returncode == 0
    assert not survivors, f"kernels survived the server: {survivors}"
    assert secret not in out + err


def test_parent_pid_must_exist(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    proc = subprocess.run(SERVE + ["--port", "0", "--root", str(tmp_path), "--parent-pid", str(gone.pid)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--parent-pid" in proc.stderr


# ---- 3. SIGTERM while a cell sleeps ---------------------------------------------------------------

def test_sigterm_with_running_and_input_waiting_cells(tmp_path):
    srv = start_server(str(tmp_path), *COUNTED)
    try:
        client = srv.client()
        before = descendants(srv.pid)
        client.create_session("python", name="sleeper")
        client.create_session("python", name="asker")
        # a cell that also starts a child process of its own
        client.execute("sleeper", protocol.MODE_QUERY,
                       "import subprocess, time\nsubprocess.Popen(['sleep', '120'])\ntime.sleep(60)")
        asked = run_until(client, "asker", "input('? ')", (protocol.STATUS_WAITING_INPUT,))
        assert asked["status"] == protocol.STATUS_WAITING_INPUT
        assert wait_for(lambda: len(descendants(srv.pid) - before) >= 3, 10)
        kernels = descendants(srv.pid) - before
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(30)  # not held by the cells (60 s, and forever)
        assert srv.proc.returncode == 0
        survivors = alive(kernels)
        kill_leftovers(survivors)
        assert not survivors, f"kernel processes survived SIGTERM: {survivors}"
    finally:
        if srv.alive():
            os.killpg(srv.pid, signal.SIGKILL)


# ---- 4./5. DELETE and PATCH of busy sessions, no leaks ---------------------------------------

@pytest.mark.parametrize("busy", ["input", "sleep"])
def test_delete_busy_session_is_prompt_and_leaves_nothing(server, busy, tmp_path):
    client = server.client()
    name = f"del-{busy}"
    before = descendants(server.pid)
    client.create_session("python", name=name)
    hook = tmp_path / "atexit-ran"
    exit_hook = f"import atexit\natexit.register(lambda: open({str(hook)!r}, 'w').close())\n"
    if busy == "input":
        result = run_until(client, name, exit_hook + "input('? ')", (protocol.STATUS_WAITING_INPUT,))
        assert result["status"] == protocol.STATUS_WAITING_INPUT
    else:
        run_until_output(client, name, exit_hook + "import subprocess, time\nsubprocess.Popen(['sleep', '120'])\n"
                         "print('sleeping', flush=True)\ntime.sleep(60)", "sleeping")
    kernels = descendants(server.pid) - before
    assert kernels
    answer = server.signed_request("DELETE", f"/session/{name}", None, content_type=None, timeout=30)
    assert answer.status_code in (200, 204), answer.text
    # the busy kernel is interrupted, then shut down: it exits as a program does (its atexit
    # handlers run), not killed when the grace time ends
    assert hook.exists(), "the busy kernel was killed, not shut down"
    assert wait_for(lambda: not alive(kernels), 5), f"leaked: {alive(kernels)}"
    assert descendants(server.pid) <= before


def test_delete_wakes_the_waiting_request(tmp_path):
    """A long poll in progress when the session is destroyed gets a final result at once.  This
    server holds a poll without output for 60 s: only the wake-up answers it within the client's
    30 s read timeout."""
    import threading

    import kernel_support as ks

    srv = start_server(str(tmp_path / "root"), "--hold", "60", *COUNTED)
    try:
        client = srv.client()
        client.create_session("python", name="del-poll")
        started = tmp_path / "started"
        got = {}

        def poll():  # the query's own answer is the long poll: the cell prints nothing
            other = srv.client(read_timeout=30)
            got["result"] = other.execute("del-poll", protocol.MODE_QUERY,
                                          f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(120)")

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        ks.wait_for_file(started)  # the run is on: its query waits in the server
        client.destroy_session("del-poll")
        thread.join(30)
        assert got.get("result", {}).get("status") == protocol.STATUS_FINISHED, got
        assert got["result"]["exitCode"] == protocol.EXIT_SESSION_VANISHED
    finally:
        assert srv.stop() == 0


def test_delete_keeps_what_a_normal_exit_does(server, tmp_path):
    """The server's kernels end without interpreter finalization (``lean_kernel``); what a
    program may count on at exit still happens before DELETE returns: its atexit handlers run,
    the objects of its namespace are finalized, and a file held elsewhere (here by a module) has
    its buffer flushed."""
    client = server.client()
    name = "del-exit-work"
    held, closed, hook = tmp_path / "held.txt", tmp_path / "closed.txt", tmp_path / "hook.txt"
    client.create_session("python", name=name)
    code = (f"import atexit, sys, types\n"
            f"keeper = sys.modules['keeper'] = types.ModuleType('keeper')\n"
            f"keeper.log = open({str(held)!r}, 'w'); keeper.log.write('held ' * 1000)\n"
            f"del keeper\n"
            f"f = open({str(closed)!r}, 'w'); f.write('closed')\n"
            f"atexit.register(lambda: open({str(hook)!r}, 'w').write('hook'))\n")
    result = run_until(client, name, code, ())
    assert result["exitCode"] == 0, result
    assert held.read_text() == ""  # still in the file's buffer
    client.destroy_session(name)
    assert held.read_text() == "held " * 1000
    assert closed.read_text() == "closed"
    assert hook.read_text() == "hook"


@pytest.mark.parametrize("busy", ["input", "sleep"])
def test_restart_busy_session(server, busy):
    client = server.client()
    name = f"rst-{busy}"
    client.create_session("python", name=name)
    client.execute(name, protocol.MODE_QUERY, "marker = 1")
    before = descendants(server.pid)
    if busy == "input":
        result = run_until(client, name, "input('? ')", (protocol.STATUS_WAITING_INPUT,))
        assert result["status"] == protocol.STATUS_WAITING_INPUT
    else:
        result = run_until_output(client, name, "import subprocess, time\nsubprocess.Popen(['sleep', '120'])\n"
                                  "print('sleeping', flush=True)\ntime.sleep(60)", "sleeping")
    old = descendants(server.pid)
    # not held by the busy cell (60 s, or forever): the request's timeout is the bound
    answer = server.signed_request("PATCH", f"/session/{name}", None, content_type=None, timeout=40)
    assert answer.status_code == 204, answer.text
    final = client.execute(name, protocol.MODE_CONTINUE, run_id=result["runId"])
    assert final["status"] == protocol.STATUS_FINISHED and final["exitCode"] == protocol.EXIT_SESSION_VANISHED
    # a fresh kernel, the old one and its children gone
    after = run_until(client, name, "print('marker' in dir())", ())
    assert after["console"] == [["stdout", "False\n"]], after
    assert wait_for(lambda: not alive(old - before - descendants(server.pid)), 5)
    leftover = alive(old) - descendants(server.pid)
    assert not leftover, leftover
    assert len(descendants(server.pid)) == len(before)
    client.destroy_session(name)


def test_idle_reaping_leaves_no_process(tmp_path):
    srv = start_server(str(tmp_path), "--idle-timeout", "2", *COUNTED)
    try:
        client = srv.client()
        before = descendants(srv.pid)
        client.create_session("python", name="idle-one")
        client.execute("idle-one", protocol.MODE_QUERY, "import subprocess; subprocess.Popen(['sleep', '120'])")
        kernels = descendants(srv.pid) - before
        assert len(kernels) >= 2
        assert wait_for(lambda: not alive(kernels), 20), f"leaked: {alive(kernels)}"
    finally:
        assert srv.stop() == 0


# ---- 6./7. --session-cwd -------------------------------------------------------------------------

def test_session_cwd(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "keep.txt").write_text("kept")
    srv = start_server(str(tmp_path / "root"), "--session-cwd", str(shared))
    try:
        client = srv.client()
        client.create_session("python", name="incwd")
        result = run_until(client, "incwd", "import os; print(os.getcwd())", ())
        assert os.path.samefile(result["console"][0][1].strip(), shared)
        client.upload("incwd", [("sub/up.txt", b"uploaded")])
        assert (shared / "sub" / "up.txt").read_bytes() == b"uploaded"
        assert client.download_single("incwd", "keep.txt") == b"kept"
        listing = srv.signed_request("GET", "/session/incwd/files", {"path": "sub"}).json()
        assert listing["abspath"] == "sub"  # relative to the session's folder: no server path
        client.destroy_session("incwd")
        assert (shared / "keep.txt").exists() and (shared / "sub" / "up.txt").exists()
    finally:
        assert srv.stop() == 0
    assert (shared / "keep.txt").exists()
