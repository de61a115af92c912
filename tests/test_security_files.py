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

import json
import os
import stat
import time
import uuid

import pytest

import kernel_support as ks
import server_fixture
from remote_kernel import install, protocol
from remote_kernel.client import api, errors

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
