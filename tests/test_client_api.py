"""Client calls against a scripted HTTP peer: both path families, both create shapes, bodies
as the API specifies them, files, and local limit checks."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import tarfile

import pytest

from _fakes import Reply, ScriptedServer, problem
from remote_kernel import signing
from remote_kernel.client import APIConfig, Client, Done, InputWanted, Record, errors

SECRET = "sk-not-to-be-seen"


def make_client(server, **kw):
    cfg = APIConfig(endpoint=[server.url], access_key="AK", secret_key=SECRET, **kw)
    return Client(cfg)


def tar_of(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_v5_create_execute_destroy():
    replies = [
        Reply(201, {"sessionId": "6f0c7a0e-uuid", "sessionName": "rk-test1", "status": "RUNNING",
                    "servicePorts": [{"name": "jupyter"}], "created": True}),
        Reply(200, {"result": {"runId": "ab" * 16, "status": "finished", "exitCode": 0,
                               "console": [["stdout", "hi\n"]]}}),
        Reply(200, {"stats": {"cpu_used": 1}}),
    ]
    with ScriptedServer(replies, version="v8.20240915", extensions=["resumable-runs"]) as server:
        with make_client(server, vfolder_mounts=["data"]) as client:
            assert client.api_version == "v8.20240915" and client.prefix == "/session"
            assert client.extensions == frozenset({"resumable-runs"})
            ref = client.create_session("python:3.11", name="rk-test1", resources={"cpu": "1"},
                                        environ={"A": 1})
            result = client.execute("rk-test1", "query", "print('hi')")
            stats = client.destroy_session("rk-test1")
    assert (ref.id, ref.name, ref.created, ref.status) == ("6f0c7a0e-uuid", "rk-test1", True, "RUNNING")
    assert ref.service_ports == [{"name": "jupyter"}]
    assert result["console"] == [["stdout", "hi\n"]] and stats == {"cpu_used": 1}
    create, execute, destroy = server.requests
    assert (create.method, create.path) == ("POST", "/session")
    assert create.json() == {"name": "rk-test1", "image": "python:3.11",
                             "config": {"resources": {"cpu": "1"}, "environ": {"A": "1"}, "mounts": ["data"]},
                             "type": "interactive", "enqueueOnly": False, "maxWaitSeconds": 0,
                             "reuseIfExists": True, "tag": None}
    assert (execute.path, execute.json()) == ("/session/rk-test1",
                                              {"mode": "query", "code": "print('hi')", "runId": None, "options": {}})
    assert (destroy.method, destroy.path) == ("DELETE", "/session/rk-test1")
    assert all(r.headers["X-BackendAI-Version"] == "v8.20240915" for r in server.requests)


def test_v4_path_family_and_kernel_id_shape():
    replies = [
        Reply(200, {"kernelId": "rk-old1", "created": False, "service_ports": [{"name": "x"}]}),
        Reply(204),
        Reply(204),
        Reply(204),
    ]
    with ScriptedServer(replies, version="v4.20190615") as server:
        with make_client(server) as client:
            assert client.api_version == "v4.20190615" and client.prefix == "/kernel"
            ref = client.create_session("python", name="rk-old1")
            assert client.destroy_session("rk-old1") == {}
            client.restart_session("rk-old1")
            client.interrupt("rk-old1")
    assert (ref.id, ref.name, ref.created, ref.service_ports) == ("rk-old1", "rk-old1", False, [{"name": "x"}])
    create = server.requests[0]
    assert create.path == "/kernel"
    assert create.json() == {"clientSessionToken": "rk-old1", "lang": "python", "image": "python", "config": {}}
    assert [(r.method, r.path) for r in server.requests[1:]] == [
        ("DELETE", "/kernel/rk-old1"), ("PATCH", "/kernel/rk-old1"), ("POST", "/kernel/rk-old1/interrupt")]
    # signed with the negotiated (older) version, verifiable by the server
    for req in server.requests:
        assert req.headers["X-BackendAI-Version"] == "v4.20190615"
        expected = signing.sign(SECRET, req.method, req.path, req.headers["Date"], req.headers["Host"],
                                req.headers["Content-Type"], "v4.20190615", req.body)
        assert signing.parse_authorization(req.headers["Authorization"]).signature == expected


def test_reused_session_created_false_with_201():
    with ScriptedServer([Reply(201, {"sessionId": "u", "sessionName": "rk-again", "created": False})]) as server:
        with make_client(server) as client:
            assert client.create_session("python", name="rk-again").created is False


def test_client_newer_than_server_and_config_version_cap():
    with ScriptedServer([], version="v9.20250722") as server:
        with make_client(server, api_version="v6.20220615") as client:
            assert client.api_version == "v6.20220615"


def test_image_not_found_on_create():
    with ScriptedServer([problem(404, "object-not-found", "No such image.")]) as server:
        with make_client(server) as client, pytest.raises(errors.ImageNotFound) as info:
            client.create_session("nope:1", name="rk-x123")
    assert SECRET not in str(info.value) and "choose another image" in str(info.value)


def test_bad_session_name_rejected_locally():
    with ScriptedServer([]) as server:
        with make_client(server) as client:
            for bad in ("ab", "-bad-name", "x" * 65, "has space"):
                with pytest.raises(errors.InvalidRequestError):
                    client.create_session("python", name=bad)
    assert server.requests == []


def test_run_driver_with_input():
    rid = "cd" * 16
    replies = [
        Reply(200, {"result": {"runId": rid, "status": "continued", "console": [["stdout", "a"]]}}),
        Reply(200, {"result": {"runId": rid, "status": "waiting-input", "options": {"is_password": False},
                               "console": [["stdout", "? "]]}}),
        Reply(200, {"result": {"runId": rid, "status": "finished", "exitCode": 0, "console": [["stdout", "ok"]]}}),
    ]
    with ScriptedServer(replies) as server:
        with make_client(server) as client:
            events = list(client.run("rk-run1", "code", on_input=lambda ev: "42\n"))
    assert events == [Record("stdout", "a"), Record("stdout", "? "), InputWanted("", False, {"is_password": False}),
                      Record("stdout", "ok"), Done("finished", 0)]
    bodies = [r.json() for r in server.requests]
    assert [b["mode"] for b in bodies] == ["query", "continue", "input"]
    assert bodies[0]["runId"] is None and bodies[1]["runId"] == rid and bodies[2]["code"] == "42"


def test_complete_inspect_is_complete_logs():
    replies = [
        Reply(200, {"result": {"status": "finished", "completions": ["print"]}}),
        Reply(200, {"result": {"status": "ok", "found": True, "data": {"text/plain": "doc"}}}),
        Reply(200, {"result": {"status": "incomplete", "indent": "    "}}),
        Reply(200, {"result": {"logs": "line1\nline2\n"}}),
    ]
    with ScriptedServer(replies) as server:
        with make_client(server) as client:
            assert client.complete("rk-c123", "pri", {"row": 0, "col": 3, "line": "pri", "post": ""})["completions"] == ["print"]
            assert client.inspect("rk-c123", "print", 5, 1)["found"] is True
            assert client.is_complete("rk-c123", "for x in y:")["status"] == "incomplete"
            assert client.logs("rk-c123") == "line1\nline2\n"
    paths = [(r.method, r.path) for r in server.requests]
    assert paths == [("POST", "/session/rk-c123/complete"), ("POST", "/session/rk-c123/inspect"),
                     ("POST", "/session/rk-c123/is_complete"), ("GET", "/session/rk-c123/logs")]
    assert server.requests[1].json() == {"code": "print", "cursor_pos": 5, "detail_level": 1}
    assert server.requests[0].json()["options"]["col"] == 3


def test_upload_multipart_parts(tmp_path):
    local = tmp_path / "local.bin"
    local.write_bytes(b"\x00\x01local")
    with ScriptedServer([Reply(204)]) as server:
        with make_client(server) as client:
            client.upload("rk-up12", [("dir/a.txt", b"alpha"), ("b.bin", str(local))])
    req = server.requests[0]
    assert req.path == "/session/rk-up12/upload"
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + req.headers["Content-Type"].encode() + b"\r\n\r\n" + req.body)
    parts = [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True))
             for p in msg.iter_parts()]
    assert parts == [("src", "dir/a.txt", b"alpha"), ("src", "b.bin", b"\x00\x01local")]


def test_upload_limits_checked_before_sending(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024))
    with ScriptedServer([]) as server:
        with make_client(server) as client:
            with pytest.raises(errors.InvalidRequestError, match="at most 20"):
                client.upload("rk-up12", [(f"f{i}", b"x") for i in range(21)])
            with pytest.raises(errors.InvalidRequestError, match="smaller than"):
                client.upload("rk-up12", [("big", b"x" * (1024 * 1024))])
            with pytest.raises(errors.InvalidRequestError, match="smaller than"):
                client.upload("rk-up12", [("ok", b"x"), ("big", str(big))])
            with pytest.raises(errors.InvalidRequestError, match="cannot read"):
                client.upload("rk-up12", [("missing", str(tmp_path / "nope"))])
            with pytest.raises(errors.InvalidRequestError, match="at most 5"):
                client.download("rk-up12", ["a", "b", "c", "d", "e", "f"])
    assert server.requests == []


def test_download_multipart_mixed_of_tars():
    boundary = "xYzZY"
    body = b""
    for name, data in (("a.txt", b"AAA"), ("b/c.txt", b"CCC\n")):
        body += (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        body += tar_of(name.rsplit("/", 1)[-1], data) + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    reply = Reply(200, body, {"Content-Type": f"multipart/mixed; boundary={boundary}"})
    with ScriptedServer([reply, reply, Reply(200, b"raw-bytes", {"Content-Type": "application/octet-stream"})]) as server:
        with make_client(server) as client:
            assert client.download("rk-dl12", ["a.txt", "b/c.txt"]) == {"a.txt": b"AAA", "b/c.txt": b"CCC\n"}
            raw = client.download("rk-dl12", ["a.txt", "b/c.txt"], extract=False)
            assert tarfile.open(fileobj=io.BytesIO(raw["a.txt"])).extractfile("a.txt").read() == b"AAA"
            assert client.download_single("rk-dl12", "a.txt") == b"raw-bytes"
    assert server.requests[0].json() == {"files": ["a.txt", "b/c.txt"]}
    assert server.requests[2].json() == {"file": "a.txt"}


def test_list_files_decodes_json_string():
    listing = [{"mode": "-rw-r--r--", "size": 3, "ctime": 1.0, "mtime": 1.0, "atime": 1.0, "filename": "a.txt"}]
    replies = [Reply(200, {"files": json.dumps(listing), "errors": "", "abspath": "/home/work"}),
               Reply(200, {"files": "[]", "errors": "No such file or directory", "abspath": "/x"})]
    with ScriptedServer(replies) as server:
        with make_client(server) as client:
            assert client.list_files("rk-ls12", "sub") == listing
            with pytest.raises(errors.NotFoundError, match="No such file"):
                client.list_files("rk-ls12", "nope")
    req = server.requests[0]
    assert (req.method, req.path, req.json()) == ("GET", "/session/rk-ls12/files", {"path": "sub"})


def test_session_not_found_and_bad_answers():
    replies = [problem(404, "session-not-found", "No such session."),
               Reply(200, b"<html>proxy</html>", {"Content-Type": "text/html"}),
               Reply(200, {"no": "result"})]
    with ScriptedServer(replies) as server:
        with make_client(server) as client:
            with pytest.raises(errors.SessionNotFound):
                client.get_session("rk-gone1")
            with pytest.raises(errors.BadResponse, match="not JSON"):
                client.execute("rk-gone1", "query", "1")
            with pytest.raises(errors.BadResponse, match="no 'result'"):
                client.execute("rk-gone1", "query", "1")


def test_missing_keys_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="secret key"):
        Client(APIConfig(endpoint=["http://127.0.0.1:1"], access_key="AK"))


def test_resumable_run_survives_a_lost_answer_without_duplicates():
    """With resumable-runs the driver picks the runId, marks requests idempotent, and a
    re-sent request whose answer was lost yields each record once."""
    def script():
        yield Reply(drop=True)  # the query reached the server, its answer is lost
        def first(req):  # the re-sent query: answered like continue from cursor 0
            return Reply(200, {"result": {"runId": req.json()["runId"], "status": "continued", "cursor": 2,
                                          "console": [["stdout", "a"], ["stdout", "b"]]}})
        yield first
        def second(req):  # the server did not see the ack yet and repeats "b"
            assert req.json()["options"] == {"cursor": 2}
            return Reply(200, {"result": {"runId": req.json()["runId"], "status": "finished", "exitCode": 0,
                                          "cursor": 3, "console": [["stdout", "b"], ["stdout", "c"]]}})
        yield second
    with ScriptedServer(list(script()), extensions=["resumable-runs"]) as server:
        with make_client(server) as client:
            events = list(client.run("rk-rs12", "print('abc')"))
    assert events == [Record("stdout", "a"), Record("stdout", "b"), Record("stdout", "c"), Done("finished", 0)]
    bodies = [r.json() for r in server.requests]
    assert [b["mode"] for b in bodies] == ["query", "query", "continue"]
    assert bodies[2]["options"] == {"cursor": 2}
    assert bodies[0]["runId"] == bodies[1]["runId"] == bodies[2]["runId"] and len(bodies[0]["runId"]) == 32
