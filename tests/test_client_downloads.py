"""Which method a download is sent with: GET with a JSON body up to API v7.20230615 (managers
23.09 and older), POST after; a refusal of the method (405, or 400 "deprecated") switches it for
the rest of the client's life.  Against a scripted peer (for the refusals) and the embedded
server, which takes both."""

from __future__ import annotations

import io
import re
import tarfile
import uuid

import pytest

from _fakes import Reply, ScriptedServer, problem
from remote_kernel.client import APIConfig, Client, errors

BOUNDARY = "xYzZY"


def tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = Reply(200, (f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
                + tar_of("a.txt", b"AAA") + f"\r\n--{BOUNDARY}--\r\n".encode(),
                {"Content-Type": f"multipart/mixed; boundary={BOUNDARY}"})
SINGLE = Reply(200, b"AAA", {"Content-Type": "application/octet-stream"})


def client_of(server: ScriptedServer, **config) -> Client:
    return Client(APIConfig(endpoint=[server.url], access_key="AK", secret_key="sk-downloads", **config))


@pytest.mark.parametrize("version, method", [("v7.20230615", "GET"), ("v6.20220615", "GET"),
                                             ("v8.20240315", "POST"), ("v8.20240915", "POST")])
def test_the_api_version_chooses_the_method(version, method):
    with ScriptedServer([ARCHIVE, SINGLE], version=version) as server:
        with client_of(server) as client:
            assert client.download("rk-dl12", ["a.txt"]) == {"a.txt": b"AAA"}
            assert client.download_single("rk-dl12", "a.txt") == b"AAA"
    assert [(r.method, r.json()) for r in server.requests] == [(method, {"files": ["a.txt"]}),
                                                               (method, {"file": "a.txt"})]


def test_a_405_switches_to_get_for_good():
    # a server newer than v7 by its version, yet taking downloads only as GET
    refused = problem(405, "method-not-allowed")
    with ScriptedServer([refused, ARCHIVE, ARCHIVE, ARCHIVE]) as server:
        with client_of(server) as client:
            for _ in range(3):
                assert client.download("rk-dl12", ["a.txt"]) == {"a.txt": b"AAA"}
    assert [r.method for r in server.requests] == ["POST", "GET", "GET", "GET"]


def test_a_deprecated_get_switches_to_post_for_good():
    # the client pinned to v7 talks to a newer manager, which refuses the GET as deprecated
    deprecated = problem(400, "deprecated", "This API is deprecated.")
    with ScriptedServer([deprecated, ARCHIVE, ARCHIVE], version="v9.20250722") as server:
        with client_of(server, api_version="v7.20230615") as client:
            for _ in range(2):
                assert client.download("rk-dl12", ["a.txt"]) == {"a.txt": b"AAA"}
    assert [r.method for r in server.requests] == ["GET", "POST", "POST"]


def test_a_server_refusing_both_methods_is_reported_once():
    refused = problem(405, "method-not-allowed")
    with ScriptedServer([refused, refused]) as server:
        with client_of(server) as client:
            with pytest.raises(errors.MethodNotAllowed, match="GET /session/rk-dl12/download"):
                client.download("rk-dl12", ["a.txt"])
    assert [r.method for r in server.requests] == ["POST", "GET"]


# ---- the embedded server ---------------------------------------------------------------------


def access_log(server, client, name: str) -> str:
    """The server's log once every call before this one is in it: tornado logs a request right
    after sending its answer, in the same turn of its loop, so by the time a later call is
    answered the earlier ones are logged."""
    client.get_session(name)
    with open(server.stderr_path, encoding="utf-8", errors="replace") as log:
        return log.read()


@pytest.mark.parametrize("version, method", [("v7.20230615", "GET"), (None, "POST")])
def test_the_embedded_server_takes_downloads_by_either_method(server, version, method):
    client = server.client(**({"api_version": version} if version else {}))
    name = "dl-" + uuid.uuid4().hex[:8]
    client.create_session("python", name=name)
    try:
        client.upload(name, [("data/a.txt", b"AAA")])
        assert client.download(name, ["data/a.txt"]) == {"data/a.txt": b"AAA"}
        assert client.download_single(name, "data/a.txt") == b"AAA"
        logged = access_log(server, client, name)
        assert re.findall(rf"tornado\.access: 200 (\w+) /session/{name}/download", logged) == [method, method]
    finally:
        client.destroy_session(name)
