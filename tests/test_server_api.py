"""Every endpoint of the embedded server, driven over HTTP on loopback with the real client
against a real ``remote-kernel serve`` process (fixture ``server``)."""

from __future__ import annotations

import base64
import io
import os
import tarfile
import threading
import uuid

import pytest

import kernel_support as ks
from remote_kernel import protocol
from remote_kernel.client import errors
from remote_kernel.client.loop import Done, Record

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def name() -> str:
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def sess(client):
    n = name()
    client.create_session("python", name=n)
    yield n
    try:
        client.destroy_session(n)
    except errors.APIError:
        pass


def run(client, sess, code, options=None, answers=()):
    """(records, inputs asked, done) of one run through the client's execute loop."""
    answers = list(answers)
    asked = []

    def on_input(event):
        asked.append(event)
        return answers.pop(0)

    events = list(client.run(sess, code, options=options, on_input=on_input))
    records = [(e.kind, e.data) for e in events if isinstance(e, Record)]
    done = [e for e in events if isinstance(e, Done)]
    assert len(done) == 1
    return records, asked, done[0]


def text_of(records, kind="stdout"):
    return "".join(d for k, d in records if k == kind)


def start_run(client, sess, code):
    """``run`` in a thread: (thread, box, first); ``first`` is set at the run's first record,
    ``box`` gets ``records`` and ``done`` when it ends."""
    box, first = {}, threading.Event()

    def go():
        records = []
        for event in client.run(sess, code):
            if isinstance(event, Record):
                records.append((event.kind, event.data))
                first.set()
            elif isinstance(event, Done):
                box["done"] = event
        box["records"] = records

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    return worker, box, first


def test_root(server, client):
    info = client.server_info
    assert info["version"] == protocol.SERVER_API_VERSION
    assert {protocol.EXT_JUPYTER_OUTPUTS, protocol.EXT_RESUMABLE_RUNS} <= set(info["extensions"])


def test_session_lifecycle(server, client):
    n = name()
    ref = client.create_session("python:3.11", name=n)
    assert ref.created and ref.status == "RUNNING" and ref.name == n
    again = client.create_session("python:3.11", name=n)
    assert not again.created and again.id == ref.id
    with pytest.raises(errors.SessionAlreadyExists):
        client.create_session("python:3.11", name=n, reuse=False)
    with pytest.raises(errors.SessionAlreadyExists):
        client.create_session("python3", name=n)  # another image
    info = client.get_session(n)
    assert info["status"] == "RUNNING" and info["image"] == "python:3.11"
    assert client.get_session(ref.id)["sessionName"] == n  # by UUID too
    workdir = os.path.join(server.root, n)
    assert os.path.isdir(workdir)
    run(client, n, "x = 41")
    client.restart_session(n)
    records, _, done = run(client, n, "print(x)")
    assert done.exit_code == 1 and "NameError" in text_of(records, "stderr")  # state lost
    stats = client.destroy_session(n)
    assert isinstance(stats, dict)
    assert not os.path.exists(workdir)
    with pytest.raises(errors.SessionNotFound):
        client.get_session(n)


def test_backendai_image_names_and_unknown_image(server, client):
    n = name()
    client.create_session("cr.backend.ai/stable/python:3.11-ubuntu22.04", name=n)
    records, _, _ = run(client, n, "import sys, remote_kernel; print(sys.executable)")
    assert text_of(records).strip()  # the server's own Python, with remote_kernel importable
    client.destroy_session(n)
    with pytest.raises(errors.ImageNotFound):
        client.create_session("no-such-language:1.0", name=name())


def test_v4_kernel_family(server):
    old = server.client(api_version="v4.20190615")
    assert old.prefix == "/kernel"
    n = name()
    ref = old.create_session("python", name=n)
    assert ref.id == n  # v4 answers kernelId = the name
    records, _, done = run(old, n, "print('v4 ok')")
    assert text_of(records) == "v4 ok\n" and done.exit_code == 0
    old.destroy_session(n)
    with pytest.raises(errors.SessionNotFound):
        old.get_session(n)


def test_stdout_stderr_order(client, sess):
    code = ("import sys\nprint('a', flush=True)\nprint('b', file=sys.stderr, flush=True)\n"
            "print('c', flush=True)\nsys.stderr.write('d\\n'); sys.stderr.flush()\nprint('e')")
    records, _, done = run(client, sess, code)
    assert done.exit_code == 0
    assert records == [("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n"), ("stderr", "d\n"), ("stdout", "e\n")]


def test_error_classic(client, sess):
    records, _, done = run(client, sess, "1/0")
    assert done.exit_code == 1
    err = text_of(records, "stderr")
    assert "ZeroDivisionError" in err and "\x1b[" not in err


RICH = f"""
from IPython.display import display, HTML, SVG
display(HTML('<b>bold</b>'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'))
display({{'image/png': '{PNG}', 'text/plain': '<img>'}}, raw=True)
display({{'{protocol.MIME_SORNA_DRAWING}': 'AAAA', 'text/plain': 'drawing'}}, raw=True)
h = display({{'text/plain': 'v1'}}, raw=True, display_id=True)
h.update({{'text/plain': 'v2'}}, raw=True)
from IPython.display import clear_output
clear_output(wait=True)
6 * 7
"""


def test_rich_outputs_classic(client, sess):
    records, _, done = run(client, sess, RICH)
    assert done.exit_code == 0
    assert records[:4] == [
        ("html", "<b>bold</b>"),
        ("media", ["image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>']),
        ("media", ["image/png", "data:image/png;base64," + PNG]),
        ("media", [protocol.MIME_SORNA_DRAWING, "AAAA"]),
    ]
    # (chunks delivered in different answers are not merged afterwards)
    assert {k for k, _ in records[4:]} == {"stdout"} and text_of(records) == "v1\nv2\n42\n"


def test_rich_outputs_jupyter(client, sess):
    records, _, done = run(client, sess, RICH + "\n", options={"outputs": "jupyter", "allowStdin": True})
    assert done.exit_code == 0
    kinds = [k for k, _ in records]
    assert kinds == ["display"] * 3 + ["media"] + ["display", "display", "clear", "display"]
    html = records[0][1]
    assert html["output_type"] == "display_data" and html["data"]["text/html"] == "<b>bold</b>"
    assert records[2][1]["data"]["image/png"] == PNG
    first, update = records[4][1], records[5][1]
    assert first["transient"]["display_id"] == update["transient"]["display_id"]
    assert update["output_type"] == "update_display_data" and update["data"]["text/plain"] == "v2"
    assert records[6][1] == {"wait": True}
    result = records[7][1]
    assert result["output_type"] == "execute_result" and result["data"]["text/plain"] == "42"
    assert isinstance(result["execution_count"], int)


def test_error_jupyter(client, sess):
    records, _, done = run(client, sess, "raise KeyError('k')", options={"outputs": "jupyter"})
    assert done.exit_code == 1
    assert records[-1][0] == "error" and records[-1][1]["ename"] == "KeyError"
    assert isinstance(records[-1][1]["traceback"], list)


def test_input_and_password_classic(client, sess):
    code = "n = input('Name: ')\nimport getpass\np = getpass.getpass('Secret: ')\nprint('hi', n, len(p))"
    records, asked, done = run(client, sess, code, answers=["ann", "hunter2"])
    assert [a.password for a in asked] == [False, True]
    assert done.exit_code == 0
    out = text_of(records)
    assert out.startswith("Name: ") and "Secret: " in out and out.endswith("hi ann 7\n")


def test_input_jupyter_and_no_stdin(client, sess):
    records, asked, _ = run(client, sess, "print(input('Q? '))", options={"outputs": "jupyter"}, answers=["yes"])
    assert asked[0].prompt == "Q? " and not asked[0].password
    assert text_of(records) == "yes\n"  # the prompt is not echoed in jupyter mode
    records, asked, done = run(client, sess, "input('Q? ')", options={"outputs": "jupyter", "allowStdin": False})
    assert not asked and done.exit_code == 1
    assert records[-1][1]["ename"] == "StdinNotImplementedError"


def test_interrupt_sleep(client, sess):
    worker, box, sleeping = start_run(client, sess, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    assert sleeping.wait(30), "the cell did not start"
    client.interrupt(sess)
    worker.join(30)  # well before the cell's 60 s
    assert not worker.is_alive()
    records, done = box["records"], box["done"]
    assert done.exit_code == 1 and "KeyboardInterrupt" in text_of(records, "stderr")
    assert run(client, sess, "print('still alive')")[0] == [("stdout", "still alive\n")]


def test_streaming_long_poll(client, sess, tmp_path):
    # Each line must come as it is printed: the cell goes on to the next one only once the test
    # has received it (a server holding output until the end never lets the cell end).
    gates = [tmp_path / f"gate-{i}" for i in range(4)]
    code = "".join(f"print({i}, flush=True)\n" + ks.gate_code(gate, timeout=30) for i, gate in enumerate(gates))
    arrivals = []
    for event in client.run(sess, code + "print(4)"):
        if isinstance(event, Record):
            arrivals.append(event.data)
            if len(arrivals) <= len(gates):
                gates[len(arrivals) - 1].touch()
    assert arrivals == ["0\n", "1\n", "2\n", "3\n", "4\n"]


def test_output_kept_while_nobody_polls(client, sess, tmp_path):
    gate, printed = tmp_path / "gate", tmp_path / "printed"
    code = ("print('a', flush=True)\n" + ks.gate_code(gate)
            + f"print('b', flush=True)\nopen({str(printed)!r}, 'w').close()")
    first = client.execute(sess, "query", code, options={})
    seen = [r[1] for r in first["console"]]
    gate.touch()
    ks.wait_for_file(printed)  # 'b' was printed while nobody waited: it must be kept
    while first["status"] != "finished":
        first = client.execute(sess, "continue", "", first["runId"])
        seen += [r[1] for r in first["console"]]
    assert "".join(seen) == "a\nb\n"


def test_fifo_queue(client, sess, tmp_path):
    gate, ended = tmp_path / "gate", tmp_path / "first-ended"
    # the first run says when it ends in a file: once the second run starts, the finished first
    # one is no longer fetchable (finished runs are kept until the next one starts)
    first = client.execute(sess, "query", "print('started', flush=True)\n" + ks.gate_code(gate)
                           + f"import time\nopen({str(ended)!r}, 'w').write(repr(time.monotonic()))")
    while not any("started" in data for _, data in first["console"]):
        assert first["status"] == "continued", first
        first = client.execute(sess, "continue", "", first["runId"])
    # submitted while the first one runs (its answer says the server has it), and not run yet
    second = client.execute(sess, "query", "import time\nprint('second', time.monotonic())")
    assert second["status"] == "continued" and second["console"] == [], second
    gate.touch()
    console = list(second["console"])
    while second["status"] != "finished":
        second = client.execute(sess, "continue", "", second["runId"])
        console += second["console"]
    t_second = float(text_of(console).split()[1])
    assert t_second > float(ended.read_text())  # queued behind, not concurrent


def test_batch_build_and_exec(client, server):
    n = name()
    client.create_session("python", name=n)
    try:
        client.upload(n, [("Makefile", b"all:\n\techo building\n"),
                          ("main.py", b"import sys\nprint('running main')\nprint('warn', file=sys.stderr)\n")])
        result = client.execute(n, "batch", "", None, {"clean": None, "build": "*", "exec": "*"})
        statuses, console = [result["status"]], list(result["console"])
        while result["status"] not in ("finished", "exec-timeout"):
            result = client.execute(n, "continue", "", result["runId"])
            statuses.append(result["status"])
            console += result["console"]
        assert "build-finished" in statuses and statuses[-1] == "finished" and result["exitCode"] == 0
        out = "".join(d for k, d in console if k == "stdout")
        assert "building" in out and "running main" in out
        assert "".join(d for k, d in console if k == "stderr") == "warn\n"
        # a failed build skips exec: 127
        client.upload(n, [("Makefile", b"all:\n\tfalse\n")])
        records, _, done = run_batch(client, n, {"build": "*", "exec": "echo should-not-run"})
        assert done.exit_code == protocol.EXIT_BUILD_FAILED
        assert "should-not-run" not in text_of(records)
    finally:
        client.destroy_session(n)


def run_batch(client, n, options):
    events = list(client.run(n, "", mode="batch", options=options))
    return [(e.kind, e.data) for e in events if isinstance(e, Record)], [], events[-1]


def test_files_roundtrip(server, client, sess):
    blob = os.urandom(300_000)
    client.upload(sess, [("data/blob.bin", blob), ("hello.txt", b"hello\n")])
    listing = {f["filename"]: f for f in client.list_files(sess)}
    assert listing["hello.txt"]["size"] == 6 and listing["data"]["mode"].startswith("d")
    assert [f["filename"] for f in client.list_files(sess, "data")] == ["blob.bin"]
    got = client.download(sess, ["data/blob.bin", "hello.txt"])
    assert got == {"data/blob.bin": blob, "hello.txt": b"hello\n"}
    assert client.download_single(sess, "data/blob.bin") == blob
    # a directory comes as a tar archive
    archive = client.download(sess, ["data"], extract=False)["data"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "data/blob.bin" in tar.getnames()
    # the code sees the uploads in its working directory
    assert run(client, sess, "print(open('hello.txt').read(), end='')")[0] == [("stdout", "hello\n")]
    # older clients: GET with a JSON body
    r = server.signed_request("GET", f"/session/{sess}/download", {"files": ["hello.txt"]})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("multipart/mixed")
    r = server.signed_request("GET", f"/session/{sess}/files", {"path": "."})
    assert r.status_code == 200 and isinstance(r.json()["files"], str)


def test_logs_and_complete(client, sess):
    assert isinstance(client.logs(sess), str)
    run(client, sess, "import os\nzebra_value = 1")
    result = client.complete(sess, "zebra_")
    assert result["status"] == "finished" and "zebra_value" in result["completions"]
    reply = client.complete(sess, "os.pa", {"jupyter": True, "cursor_pos": 5})
    assert reply["status"] == "ok" and "path" in reply["matches"] and reply["cursor_end"] == 5
    assert client.is_complete(sess, "for i in range(3):")["status"] == "incomplete"
    assert client.inspect(sess, "len", 3)["found"] is True


def test_sessions_belong_to_their_key(server, client, sess):
    other = server.client(access_key=server.other_key, secret_key=server.other_secret)
    with pytest.raises(errors.SessionNotFound):
        other.get_session(sess)
    with pytest.raises(errors.SessionNotFound):
        other.execute(sess, "query", "print(1)")
    with pytest.raises(errors.SessionNotFound):
        other.download_single(sess, "hello.txt")
    with pytest.raises(errors.SessionNotFound):
        other.interrupt(sess)
    with pytest.raises(errors.SessionNotFound):
        other.destroy_session(sess)
    # the same name is free for the other key: its own session, its own directory
    mine = other.create_session("python", name=sess)
    assert mine.created
    assert run(other, sess, "import os; print(os.path.exists('hello.txt'))")[0] == [("stdout", "False\n")]
    other.destroy_session(sess)
    assert client.get_session(sess)["status"] == "RUNNING"


def test_resumable_runs(client, sess):
    run_id = uuid.uuid4().hex
    code = "import time\nprint('once', flush=True)\ntime.sleep(0.3)\nprint('twice')"
    first = client.execute(sess, "query", code, run_id)
    assert first["runId"] == run_id and first["cursor"] == len(first["console"])
    # the answer "was lost": the same query again never runs the code twice
    again = client.execute(sess, "query", code, run_id)
    assert again["console"][:len(first["console"])] == first["console"]
    cursor = again["cursor"]
    result = again
    seen = [d for _, d in again["console"]]
    while result["status"] != "finished":
        result = client.execute(sess, "continue", "", run_id, {"cursor": cursor})
        repeat = client.execute(sess, "continue", "", run_id, {"cursor": cursor})  # a lost answer, re-sent
        assert repeat["console"] == result["console"] and repeat["cursor"] == result["cursor"]
        seen += [d for _, d in result["console"]]
        cursor = result["cursor"]
    assert "".join(seen) == "once\ntwice\n"
    # a finished run stays fetchable
    assert client.execute(sess, "continue", "", run_id, {"cursor": cursor})["status"] == "finished"


def test_kernel_death(client):
    n = name()
    client.create_session("python", name=n)
    records, _, done = run(client, n, "import os\nos._exit(1)")
    assert done.exit_code == protocol.EXIT_SESSION_VANISHED and records == []
    with pytest.raises(errors.SessionNotFound):
        client.get_session(n)
    with pytest.raises(errors.SessionNotFound):
        client.execute(n, "query", "print(1)")
    # the client recreates it under the same name
    assert client.create_session("python", name=n).created
    records, _, done = run(client, n, "import os\nos._exit(3)", options={"outputs": "jupyter"})
    assert done.exit_code == protocol.EXIT_SESSION_VANISHED
    assert records[-1][0] == "error" and records[-1][1]["ename"] == "KernelDied"
    client.destroy_session(n)


def test_official_client_quirks(server, sess):
    """What official clients send: no options in query, mode "continued", GET files with a body."""
    path = f"/session/{sess}"
    r = server.signed_request("POST", path, {"mode": "query", "code": "import time\ntime.sleep(3)\nprint('done')",
                                             "runId": None})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["status"] == "continued" and result["exitCode"] is None  # held, then released
    while result["status"] != "finished":
        r = server.signed_request("POST", path, {"mode": "continued", "code": "", "runId": result["runId"]})
        assert r.status_code == 200, r.text
        result = r.json()["result"]
    assert result["console"] == [["stdout", "done\n"]] and result["exitCode"] == 0
