"""Reliability and security of session files and names against a real ``remote-kernel serve``
(issue 16, part II): names are checked as whole strings; file calls never follow a name swapped
into a symlink, FIFO or hard link by the session's own code, never answer 500 for what a client
or its code did, and one session's stuck file calls never starve another's; downloads and
websocket input are bounded in memory; big outputs keep their start and end; a running cell
keeps its session from the idle reaper; session folders are private (0700); listings do not
show the server's paths.

The ``server`` fixture (tests/server_fixture.py) checks on teardown that the server logged no
traceback: an unexpected exception (a 500) fails the module.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import uuid

import psutil
import pytest
import requests
import websocket

import kernel_support as ks
import server_fixture
from remote_kernel import install, protocol
from remote_kernel.client import api, errors
from remote_kernel.client.auth import BackendAIAuth
from remote_kernel.server import runs

PROBLEM = protocol.PROBLEM_CONTENT_TYPE


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_problem(response, status: int = 400, slug: str = "invalid-api-params") -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
    problem = response.json()
    assert problem["type"] == protocol.PROBLEM_BASE + slug, problem
    return problem


# ---- 10. names, ids and paths are checked as whole strings ---------------------------------------

@pytest.mark.parametrize("name", ["abcd\n", "abcd\r\n", "ab\ncd", "\nabcd"])
def test_a_session_name_is_checked_whole(server, name):
    """``$`` also matches before a final newline: ``abcd\\n`` passed the name check."""
    r = server.signed_request("POST", "/session", {"name": name, "image": "python"})
    assert_problem(r)
    with pytest.raises(errors.InvalidRequestError):
        api.check_session_name(name)  # the client refuses it before sending it too
    with pytest.raises(install.InstallError):
        install.install(name="remote-" + name)  # (refused before anything is written)


def test_a_run_id_is_checked_whole(server):
    client = server.client()
    name = unique("names")
    client.create_session("python", name=name)
    try:
        r = server.signed_request("POST", f"/session/{name}", {"mode": "query", "code": "1", "runId": "abc\n"})
        assert_problem(r)
        assert client.execute(name, "query", "print('ok')", "abc")["console"] == [["stdout", "ok\n"]]
    finally:
        client.destroy_session(name)


# ---- 13. listings show no path of the server ------------------------------------------------------

def test_a_listing_shows_paths_relative_to_the_session(server):
    """``abspath`` stays (the official CLI prints it) but names no folder of the server."""
    client = server.client()
    name = unique("listing")
    client.create_session("python", name=name)
    try:
        client.upload(name, [("sub/dir/f.txt", b"x")])
        for path, shown in ((".", "."), ("sub", "sub"), ("sub/dir", "sub/dir"), ("sub/dir/", "sub/dir")):
            r = server.signed_request("POST", f"/session/{name}/files", {"path": path})
            assert r.status_code == 200, r.text
            assert r.json()["abspath"] == shown
            assert server.root not in r.text and os.path.realpath(server.root) not in r.text
    finally:
        client.destroy_session(name)


# ---- 12. session folders are private -------------------------------------------------------------

def test_session_folders_are_private_cold_or_warm(server):
    """0700 for a session started cold (0755 before, readable by others under a shared
    ``--root``) as for one adopting a warm spare."""
    client = server.client()
    cold, warm = unique("cold"), unique("warm")
    client.create_session("python", name=cold, environ={"ONLY_COLD": "1"})  # a spare cannot serve it
    client.create_session("python", name=warm)
    try:
        for name in (cold, warm):
            folder = client.execute(name, "query", "import os; print(os.getcwd())")["console"][0][1].strip()
            assert os.path.dirname(os.path.realpath(folder)) == os.path.realpath(server.root)
            assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, (name, oct(os.stat(folder).st_mode))
    finally:
        client.destroy_session(cold)
        client.destroy_session(warm)


# ---- 11. a running cell is activity ---------------------------------------------------------------

def wait_for(predicate, timeout: float, what: str) -> None:
    """A bounded poll, for what sends no event (a folder the server removes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_the_idle_reaper_spares_a_session_whose_cell_runs(tmp_path):
    """``--idle-timeout 2``: a session whose cell still runs is not idle, however long nobody
    calls; it was destroyed (with its folder) before.  Once the cell ends it is idle again."""
    srv = server_fixture.start_server(str(tmp_path / "root"), "--idle-timeout", "2", "--warm-kernels", "0")
    gate = tmp_path / "gate"
    try:
        client = srv.client()
        client.create_session("python", name="busy-one")
        code = "print('started', flush=True)\n" + ks.gate_code(gate) + "print('done')\n"
        result = client.execute("busy-one", "query", code)
        while not any("started" in d for _, d in result["console"]):
            result = client.execute("busy-one", "continue", "", result["runId"])
        # A session created after the last call on busy-one: once the reaper took it,
        # busy-one has been unused for longer, and was taken in the same sweep if idle.
        client.create_session("python", name="idle-one")
        busy, idle = os.path.join(srv.root, "busy-one"), os.path.join(srv.root, "idle-one")
        assert os.path.isdir(busy) and os.path.isdir(idle)
        wait_for(lambda: not os.path.exists(idle), 60, "reaping the idle session")
        assert os.path.isdir(busy), "the session whose cell runs was reaped"
        gate.touch()
        console = list(result["console"])
        while result["status"] != "finished":
            result = client.execute("busy-one", "continue", "", result["runId"])
            console += result["console"]
        assert "".join(d for k, d in console if k == "stdout") == "started\ndone\n"
        wait_for(lambda: not os.path.exists(busy), 60, "reaping the session once its cell ended")
    finally:
        assert srv.stop() == 0


# ---- 9. what a client or the session's code makes fail is a 4xx ---------------------------------

def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = [f'--{boundary}\r\nContent-Disposition: form-data; name="src"; filename="{filename}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for filename, data in files]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(server, name: str, files: list[tuple[str, bytes]], **kwargs):
    body, content_type = multipart(files)
    return server.signed_request("POST", f"/session/{name}/upload", body, content_type=content_type, **kwargs)


@pytest.fixture
def session(server):
    client = server.client()
    name = unique("files")
    client.create_session("python", name=name)
    yield client, name
    client.destroy_session(name)


def run_code(client, name: str, code: str) -> str:
    """Run ``code`` to its end; its stdout (fails on an error)."""
    result = client.execute(name, "query", code)
    console = list(result["console"])
    while result["status"] != "finished":
        result = client.execute(name, "continue", "", result["runId"])
        console += result["console"]
    assert result["exitCode"] == 0, console
    return "".join(d for k, d in console if k == "stdout")


def test_paths_below_a_regular_file_are_a_400(server, session):
    """``a.txt/inner.txt`` when a.txt is a file: the upload answered 500."""
    client, name = session
    client.upload(name, [("a.txt", b"a")])
    assert_problem(upload(server, name, [("a.txt/inner.txt", b"x")]))
    assert_problem(upload(server, name, [("a.txt/deeper/inner.txt", b"x")]))
    assert_problem(server.signed_request("POST", f"/session/{name}/files", {"path": "a.txt"}))
    assert_problem(server.signed_request("POST", f"/session/{name}/download_single", {"file": "a.txt/inner.txt"}))
    assert client.download_single(name, "a.txt") == b"a"


@pytest.mark.slow
def test_uploads_during_a_symlink_swap_race_are_never_a_500(server, session, tmp_path):
    """The session's code swaps ``d`` between a folder and a symlink to a folder outside while
    uploads go to ``d/x.txt``: each answer is a 204 or a 400 problem+json (500s before), and
    nothing is written outside."""
    client, name = session
    outside, stop = tmp_path / "outside", tmp_path / "stop"
    outside.mkdir()
    code = (f"import os, shutil\nos.mkdir('d-real')\nprint('swapping', flush=True)\n"
            f"while not os.path.exists({str(stop)!r}):\n"
            f"    for step in (lambda: os.rename('d-real', 'd'), lambda: os.rename('d', 'd-real'),\n"
            f"                 lambda: os.symlink({str(outside)!r}, 'd'), lambda: os.unlink('d')):\n"
            f"        try:\n"
            f"            step()\n"
            f"        except OSError:\n"
            f"            shutil.rmtree('d', ignore_errors=True)\n"
            f"            os.makedirs('d-real', exist_ok=True)\n")
    result = client.execute(name, "query", code)
    while not any("swapping" in d for _, d in result["console"]):
        result = client.execute(name, "continue", "", result["runId"])
    statuses = {}
    try:
        for i in range(300):
            r = upload(server, name, [("d/x.txt", b"%d" % i)])
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code != 204:
                assert_problem(r)
    finally:
        stop.touch()
    while result["status"] != "finished":
        result = client.execute(name, "continue", "", result["runId"])
    print(f"\nswap race: answers {statuses}")
    assert not list(outside.iterdir()), "an upload went through the symlink"


# ---- 8. hard links ------------------------------------------------------------------------------

def test_hard_links_are_neither_served_nor_written_through(server, session, tmp_path):
    """The session's code hard-links a file from outside its folder: downloads refuse it (they
    served it), and an upload replaces the name instead of writing through it into the file
    outside."""
    client, name = session
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    run_code(client, name, f"import os\nos.link({str(outside)!r}, 'hl.txt')\nos.mkdir('dir')\n"
                           f"os.link({str(outside)!r}, 'dir/inner.txt')\nopen('dir/plain.txt', 'w').write('p')\n")
    base = f"/session/{name}"
    assert_problem(server.signed_request("POST", base + "/download_single", {"file": "hl.txt"}))
    assert_problem(server.signed_request("POST", base + "/download", {"files": ["hl.txt"]}))
    assert_problem(server.signed_request("POST", base + "/download", {"files": ["dir"]}))
    assert {f["filename"] for f in client.list_files(name)} >= {"hl.txt", "dir"}  # listing is fine
    client.upload(name, [("hl.txt", b"uploaded"), ("dir/inner.txt", b"inner")])
    assert outside.read_bytes() == b"outside" and os.stat(outside).st_nlink == 1
    assert client.download_single(name, "hl.txt") == b"uploaded"
    assert client.download(name, ["dir/inner.txt"]) == {"dir/inner.txt": b"inner"}


def test_an_upload_replacing_a_file_keeps_its_permissions(server, session):
    client, name = session
    run_code(client, name, "import os\nopen('run.sh', 'w').write('echo old')\nos.chmod('run.sh', 0o750)\n")
    client.upload(name, [("run.sh", b"echo new")])
    assert run_code(client, name, "import os, stat\nprint(oct(stat.S_IMODE(os.stat('run.sh').st_mode)), "
                                  "open('run.sh').read())") == "0o750 echo new\n"
    assert not [f for f in client.list_files(name) if f["filename"].startswith(".rk-upload")]


# ---- 4. FIFOs block no call, and one session's calls never starve another's --------------------

@pytest.mark.slow
def test_fifos_block_no_file_call_and_sigterm_still_stops_the_server(tmp_path):
    """Key A's code makes FIFOs where A uploads and downloads, and swaps a file for a FIFO
    while A downloads it.  Before: every call onto a FIFO blocked a thread of the server's
    shared pool, key B's calls timed out behind them, and SIGTERM no longer stopped the server.
    Now A's calls answer (a FIFO is not a regular file: 400; an upload replaces the name: 204),
    B's calls work, and SIGTERM stops the server within 10 s."""
    srv = server_fixture.start_server(str(tmp_path / "root"))
    stop = tmp_path / "stop"
    try:
        a = srv.client()
        b = srv.client(access_key=srv.other_key, secret_key=srv.other_secret)
        a.create_session("python", name="fifo-a")
        b.create_session("python", name="fifo-b")
        run_code(a, "fifo-a", "import os\nfor i in range(30):\n    os.mkfifo(f'p{i}')\nos.mkdir('d')\n"
                              "os.mkfifo('d/q')\nopen('d/f.txt', 'w').write('f')\n")
        swap = (f"import os\nopen('r.txt', 'w').write('r')\nprint('swapping', flush=True)\n"
                f"while not os.path.exists({str(stop)!r}):\n"
                f"    os.mkfifo('r.tmp')\n    os.replace('r.tmp', 'r.txt')\n"
                f"    open('r.tmp', 'w').write('r')\n    os.replace('r.tmp', 'r.txt')\n")
        result = a.execute("fifo-a", "query", swap)
        while not any("swapping" in d for _, d in result["console"]):
            result = a.execute("fifo-a", "continue", "", result["runId"])
        calls = [("POST", "/session/fifo-a/download_single", {"file": f"p{i}"}) for i in range(10)]
        calls += [("POST", "/session/fifo-a/download", {"files": [f"p{i}"]}) for i in range(10, 20)]
        calls += [("POST", "/session/fifo-a/download_single", {"file": "r.txt"}) for _ in range(20)]
        with concurrent.futures.ThreadPoolExecutor(len(calls) + 20) as pool:
            answers = [pool.submit(srv.signed_request, *call, timeout=30) for call in calls]
            answers += [pool.submit(upload, srv, "fifo-a", [(f"p{i}", b"x")], timeout=30) for i in range(20, 30)]
            # meanwhile key B's calls
            b.upload("fifo-b", [("b.txt", b"b")])
            assert [f["filename"] for f in b.list_files("fifo-b")] == ["b.txt"]
            assert b.download_single("fifo-b", "b.txt") == b"b"
            answers = [f.result() for f in answers]
        stop.touch()
        for (_, path, body), r in zip(calls, answers):
            if path.endswith("/download"):  # a tar holding the FIFO as an entry, no content
                assert r.status_code == 200, r.text[:300]
            elif body["file"] == "r.txt" and r.status_code == 200:
                assert r.content == b"r"
            else:
                assert "not a regular file" in assert_problem(r)["msg"]
        assert all(r.status_code == 204 for r in answers[len(calls):]), [r.text for r in answers[len(calls):]]
        with tarfile.open(fileobj=io.BytesIO(a.download("fifo-a", ["d"], extract=False)["d"])) as tar:
            kinds = {m.name: m.type for m in tar.getmembers()}
        assert kinds == {"d": tarfile.DIRTYPE, "d/f.txt": tarfile.REGTYPE, "d/q": tarfile.FIFOTYPE}
        while result["status"] != "finished":
            result = a.execute("fifo-a", "continue", "", result["runId"])
    finally:
        stop.touch()
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            code = srv.proc.wait(30)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            raise AssertionError("the server did not stop on SIGTERM within 30 s") from None
        elapsed = time.monotonic() - started
    print(f"\nSIGTERM to exit: {elapsed:.2f} s")
    assert code == 0 and elapsed < 10, (code, elapsed)


def test_a_stuck_lane_holds_up_neither_another_lane_nor_the_exit():
    """What no FIFO check can prevent (a file system that never answers): a call stuck on one
    session's lane leaves another lane answering, and the process still exits."""
    code = ("import asyncio, threading\nfrom remote_kernel.server import lanes\nnever = threading.Event()\n"
            "async def main():\n"
            "    stuck = asyncio.ensure_future(lanes.Lane().run(never.wait))\n"
            "    assert await asyncio.wait_for(lanes.Lane().run(sum, [1, 2]), 30) == 3\n"
            "    print('the other lane answered', flush=True)\n"
            "asyncio.run(main())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "the other lane answered" in proc.stdout, proc.stderr


# ---- 6. memory: downloads and websocket input are bounded ---------------------------------------

MiB = 1024 * 1024


class PeakRSS:
    """The peak resident memory of a process, sampled every 10 ms while in use."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.start = self.peak = self.proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def signed(server):
    return BackendAIAuth(server.access_key, server.secret_key, protocol.SERVER_API_VERSION)


@pytest.mark.slow
def test_a_download_is_streamed_and_capped_in_total(server, session):
    """One 40 MB file asked five times in one request grew the server by ~650 MB; the limit was
    per path, so 5 x 60 MB passed too."""
    client, name = session
    run_code(client, name, "for n, size in (('big.bin', 40), ('huge.bin', 60)):\n"
                           "    with open(n, 'wb') as f:\n        f.truncate(size * 1024 * 1024)\n")
    url = f"{server.url}/session/{name}/download"
    with PeakRSS(server.pid) as rss:
        with requests.post(url, json={"files": ["big.bin"] * 5}, auth=signed(server), stream=True, timeout=60) as r:
            assert r.status_code == 200, r.text[:300]
            received = sum(len(chunk) for chunk in r.iter_content(MiB))
    print(f"\ndownload 5 x 40 MB: server RSS {rss.start // MiB} MiB -> peak {rss.peak // MiB} MiB "
          f"(+{rss.growth // MiB} MiB), {received // MiB} MiB received")
    assert received > 200 * MiB
    assert rss.growth < 100 * MiB, f"the server grew by {rss.growth // MiB} MiB"
    r = server.signed_request("POST", f"/session/{name}/download", {"files": ["huge.bin"] * 5})
    assert "download limit" in assert_problem(r)["msg"]
    single = f"{server.url}/session/{name}/download_single"
    with PeakRSS(server.pid) as rss:
        with requests.post(single, json={"file": "huge.bin"}, auth=signed(server), stream=True, timeout=60) as r:
            assert r.status_code == 200 and int(r.headers["Content-Length"]) == 60 * MiB
            assert sum(len(chunk) for chunk in r.iter_content(MiB)) == 60 * MiB
    assert rss.growth < 100 * MiB, f"download_single: the server grew by {rss.growth // MiB} MiB"
    for leave in (url, single):  # clients that leave after the first chunk
        body = {"files": ["big.bin"] * 5} if leave == url else {"file": "big.bin"}
        with requests.post(leave, json=body, auth=signed(server), stream=True, timeout=60) as r:
            assert len(next(r.iter_content(MiB))) > 0
    assert client.download_single(name, "big.bin") == bytes(40 * MiB)


def ws_connect(server, path: str) -> websocket.WebSocket:
    prepared = requests.Request("GET", server.url + path).prepare()
    signed(server)(prepared)
    headers = [f"{k}: {v}" for k, v in prepared.headers.items()]
    return websocket.create_connection("ws" + server.url[len("http"):] + path, header=headers, timeout=60)


@pytest.mark.slow
def test_websocket_input_is_bounded_while_a_run_goes_on(server, session, tmp_path):
    """20 frames of 8 MB sent during a run (which reads none of them) were all queued; now the
    server stops reading a connection whose unread input is full, and the frames wait in the
    sender's socket."""
    client, name = session
    gate = tmp_path / "gate"
    ws = ws_connect(server, f"/stream/session/{name}/execute")
    code = "print('waiting', flush=True)\n" + ks.gate_code(gate) + "print('done')\n"
    ws.send(json.dumps({"mode": "query", "code": code, "options": {}}))
    assert "waiting" in json.dumps(json.loads(ws.recv())["console"])
    frame = "x" * (8 * MiB - 4096)  # under the frame limit (8 MiB, the JSON body limit)
    sent = []

    def send_all() -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            for _ in range(20):
                ws.send(frame)
                sent.append(time.monotonic())

    with PeakRSS(server.pid) as rss:
        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        # the end of the sending: all sent, or the server reads no more (no progress for 3 s)
        last = time.monotonic()
        while sender.is_alive() and time.monotonic() - (sent[-1] if sent else last) < 3:
            sender.join(0.1)
    frames_sent = len(sent)
    gate.touch()
    finished = None
    while finished is None:
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, data)
        reply = json.loads(data)
        if reply["status"] == "finished":
            finished = reply
    ws.shutdown()
    sender.join(30)
    print(f"\nwebsocket 20 x 8 MB: {frames_sent} frames accepted; server RSS {rss.start // MiB} MiB -> "
          f"peak {rss.peak // MiB} MiB (+{rss.growth // MiB} MiB)")
    assert rss.growth < 100 * MiB, f"the server grew by {rss.growth // MiB} MiB"
    assert client.execute(name, "query", "print('still fine')")["console"] == [["stdout", "still fine\n"]]


# ---- 7. big outputs keep their start and their end -------------------------------------------

@pytest.mark.slow
def test_a_burst_bigger_than_the_run_buffer_keeps_its_start_and_end(server, session):
    """34 MB in one write, then ``END``, with the default 32 MiB run buffer: this came back as
    the truncation notice alone.  Now the output keeps its start and its end, and a notice says
    how much was dropped between them."""
    client, name = session
    result = client.execute(name, "query", "import sys\nsys.stdout.write('x' * 34_000_000)\nprint('END')")
    console = list(result["console"])
    while result["status"] != "finished":
        result = client.execute(name, "continue", "", result["runId"])
        console += result["console"]
    out = "".join(d for k, d in console if k == "stdout")
    notices = [d for k, d in console if k == "stderr"]
    assert out.startswith("x" * 1000) and out.endswith("xxEND\n"), (out[:20], out[-20:])
    dropped = 34_000_004 - len(out)
    if dropped:  # the client did not keep up (it need not: one write may arrive as one message)
        [notice] = notices
        assert f"about {runs.amount(dropped)} of this run's output was dropped" in notice, notice
    else:
        assert not notices
    print(f"\nburst: {len(out)} characters kept, {dropped} dropped, notices {len(notices)}")
