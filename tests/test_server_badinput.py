"""Table-driven: every class of bad input (auth failures, malformed bodies, wrong types,
unknown modes, missing runIds, unknown sessions, path escapes, oversize uploads) gets the right
status and problem slug, and the server keeps serving afterwards."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from remote_kernel import protocol, signing

S = "bad-" + uuid.uuid4().hex[:8]  # the session every case is aimed at
P = f"/session/{S}"


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for filename, data in files:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="src"; filename="{filename}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def skewed(minutes: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


# (id, request kwargs for signed_request, expected status, expected slug)
CASES = [
    # -- authentication / versions
    ("no-auth-header", dict(method="GET", path=P, headers={"Authorization": ""}), 401, "auth-failed"),
    ("malformed-auth", dict(method="GET", path=P, headers={"Authorization": "BackendAI nonsense"}), 400, "invalid-auth-params"),
    ("wrong-sign-method", dict(method="GET", path=P, headers={"Authorization": "BackendAI signMethod=HMAC-MD5, credential=AK:00"}), 400, "invalid-auth-params"),
    ("unknown-key", dict(method="GET", path=P, access_key="AKNOBODY"), 401, "auth-failed"),
    ("bad-signature", dict(method="GET", path=P, secret_key="not-the-secret"), 401, "auth-failed"),
    ("signed-other-path", dict(method="GET", path=P, sign_path="/session/other"), 401, "auth-failed"),
    ("missing-date", dict(method="GET", path=P, headers={"Date": ""}), 400, "invalid-auth-params"),
    ("malformed-date", dict(method="GET", path=P, date="yesterday"), 400, "invalid-auth-params"),
    ("skewed-date-past", dict(method="GET", path=P, date=lambda: skewed(-20)), 400, "invalid-auth-params"),
    ("skewed-date-future", dict(method="GET", path=P, date=lambda: skewed(20)), 400, "invalid-auth-params"),
    ("missing-version", dict(method="GET", path=P, headers={"X-BackendAI-Version": ""}), 400, "generic-bad-request"),
    ("old-major-version", dict(method="GET", path=P, version="v3.20170615"), 400, "generic-bad-request"),
    ("malformed-version", dict(method="GET", path=P, version="8"), 400, "generic-bad-request"),
    # -- malformed bodies and wrong types
    ("malformed-json", dict(method="POST", path=P, body=b'{"mode": "query", '), 400, "invalid-api-params"),
    ("invalid-utf8", dict(method="POST", path=P, body=b'{"mode": "query", "code": "\xff\xfe"}'), 400, "invalid-api-params"),
    ("json-array", dict(method="POST", path=P, body=b"[1, 2]"), 400, "invalid-api-params"),
    ("empty-body", dict(method="POST", path=P, body=b""), 400, "invalid-api-params"),
    ("deep-nesting", dict(method="POST", path=P, body=b"[" * 100000 + b"]" * 100000), 400, "invalid-api-params"),
    ("body-too-large", dict(method="POST", path=P, body=b'{"mode": "query", "code": "' + b"x" * (9 * 1024 * 1024) + b'"}'), 400, "invalid-api-params"),
    # over the server's whole-body limit (~21 MiB): refused from the declared length, as 413
    ("body-over-server-limit", dict(method="POST", path=P, body=b"x" * (30 * 1024 * 1024)), 413, "invalid-api-params"),
    ("upload-over-server-limit", dict(method="POST", path=P + "/upload", multipart=[("big.bin", b"x" * (30 * 1024 * 1024))]), 413, "invalid-api-params"),
    ("mode-int", dict(method="POST", path=P, body={"mode": 5, "code": "", "runId": None}), 400, "invalid-api-params"),
    ("code-int", dict(method="POST", path=P, body={"mode": "query", "code": 123, "runId": None}), 400, "invalid-api-params"),
    ("options-string", dict(method="POST", path=P, body={"mode": "query", "code": "", "runId": None, "options": "x"}), 400, "invalid-api-params"),
    ("runid-int", dict(method="POST", path=P, body={"mode": "query", "code": "", "runId": 5}), 400, "invalid-api-params"),
    ("runid-garbage", dict(method="POST", path=P, body={"mode": "query", "code": "", "runId": "a/b\x00"}), 400, "invalid-api-params"),
    ("cursor-negative", dict(method="POST", path=P, body={"mode": "continue", "code": "", "runId": "abc", "options": {"cursor": -1}}), 400, "invalid-api-params"),
    ("allowstdin-string", dict(method="POST", path=P, body={"mode": "query", "code": "", "runId": None, "options": {"allowStdin": "no"}}), 400, "invalid-api-params"),
    ("batch-exec-int", dict(method="POST", path=P, body={"mode": "batch", "code": "", "runId": None, "options": {"exec": 1}}), 400, "invalid-api-params"),
    ("create-name-int", dict(method="POST", path="/session", body={"name": 123, "image": "python"}), 400, "invalid-api-params"),
    ("create-no-image", dict(method="POST", path="/session", body={"name": "okname"}), 400, "invalid-api-params"),
    ("create-reuse-string", dict(method="POST", path="/session", body={"name": "okname", "image": "python", "reuseIfExists": "yes"}), 400, "invalid-api-params"),
    ("create-environ-list", dict(method="POST", path="/session", body={"name": "okname", "image": "python", "config": {"environ": ["A=1"]}}), 400, "invalid-api-params"),
    ("create-name-short", dict(method="POST", path="/session", body={"name": "abc", "image": "python"}), 400, "invalid-api-params"),
    ("create-name-chars", dict(method="POST", path="/session", body={"name": "bad name!", "image": "python"}), 400, "invalid-api-params"),
    ("create-name-long", dict(method="POST", path="/session", body={"name": "n" * 65, "image": "python"}), 400, "invalid-api-params"),
    ("create-unknown-image", dict(method="POST", path="/session", body={"name": "okname", "image": "cobol:74"}), 404, "image-not-found"),
    # -- modes and run ids
    ("unknown-mode", dict(method="POST", path=P, body={"mode": "fly", "code": "", "runId": None}), 400, "invalid-api-params"),
    ("continue-no-runid", dict(method="POST", path=P, body={"mode": "continue", "code": "", "runId": None}), 400, "invalid-api-params"),
    ("input-no-runid", dict(method="POST", path=P, body={"mode": "input", "code": "x", "runId": None}), 400, "invalid-api-params"),
    ("continue-unknown-runid", dict(method="POST", path=P, body={"mode": "continue", "code": "", "runId": uuid.uuid4().hex}), 400, "invalid-api-params"),
    # -- unknown sessions and URLs
    ("unknown-session", dict(method="GET", path="/session/no-such-session"), 404, "session-not-found"),
    ("unknown-kernel-v4", dict(method="GET", path="/kernel/no-such-session", version="v4.20190615"), 404, "kernel-not-found"),
    ("unknown-session-execute", dict(method="POST", path="/session/no-such-session", body={"mode": "query", "code": "1", "runId": None}), 404, "session-not-found"),
    ("nul-in-session-name", dict(method="GET", path="/session/abc%00def"), 400, "invalid-api-params"),
    ("invalid-utf8-in-url", dict(method="GET", path="/session/%ff%fe"), 400, "invalid-api-params"),
    ("unknown-url", dict(method="GET", path="/nothing/here"), 404, "url-not-found"),
    ("wrong-method", dict(method="PUT", path=P, body={}), 405, "method-not-allowed"),
    # -- path escapes in every file call
    ("download-dotdot", dict(method="POST", path=P + "/download", body={"files": ["../x"]}), 400, "invalid-api-params"),
    ("download-absolute", dict(method="POST", path=P + "/download", body={"files": ["/etc/passwd"]}), 400, "invalid-api-params"),
    ("download-inner-dotdot", dict(method="POST", path=P + "/download", body={"files": ["a/../../x"]}), 400, "invalid-api-params"),
    ("download-symlink-escape", dict(method="POST", path=P + "/download", body={"files": ["escape/passwd"]}), 400, "invalid-api-params"),
    ("download-nul", dict(method="POST", path=P + "/download", body={"files": ["a\x00b"]}), 400, "invalid-api-params"),
    ("download-too-many", dict(method="POST", path=P + "/download", body={"files": ["a"] * 6}), 400, "invalid-api-params"),
    ("download-not-list", dict(method="POST", path=P + "/download", body={"files": "a"}), 400, "invalid-api-params"),
    ("download-missing", dict(method="POST", path=P + "/download", body={"files": ["nope.txt"]}), 400, "invalid-api-params"),
    ("single-dotdot", dict(method="POST", path=P + "/download_single", body={"file": "../../etc/passwd"}), 400, "invalid-api-params"),
    ("single-symlink-escape", dict(method="POST", path=P + "/download_single", body={"file": "escape/passwd"}), 400, "invalid-api-params"),
    ("single-symlink-file", dict(method="POST", path=P + "/download_single", body={"file": "passwd-link"}), 400, "invalid-api-params"),
    ("single-not-string", dict(method="POST", path=P + "/download_single", body={"file": ["x"]}), 400, "invalid-api-params"),
    ("files-absolute", dict(method="POST", path=P + "/files", body={"path": "/etc"}), 400, "invalid-api-params"),
    ("files-symlink-escape", dict(method="POST", path=P + "/files", body={"path": "escape"}), 400, "invalid-api-params"),
    ("files-not-string", dict(method="POST", path=P + "/files", body={"path": 3}), 400, "invalid-api-params"),
    ("upload-dotdot", dict(method="POST", path=P + "/upload", multipart=[("../evil.txt", b"x")]), 400, "invalid-api-params"),
    ("upload-absolute", dict(method="POST", path=P + "/upload", multipart=[("/tmp/evil.txt", b"x")]), 400, "invalid-api-params"),
    ("upload-symlink-escape", dict(method="POST", path=P + "/upload", multipart=[("escape/evil.txt", b"x")]), 400, "invalid-api-params"),
    ("upload-oversize", dict(method="POST", path=P + "/upload", multipart=[("big.bin", b"x" * protocol.MAX_UPLOAD_FILE_SIZE)]), 400, "invalid-api-params"),
    ("upload-too-many", dict(method="POST", path=P + "/upload", multipart=[(f"f{i}.txt", b"x") for i in range(21)]), 400, "invalid-api-params"),
    ("upload-not-multipart", dict(method="POST", path=P + "/upload", body={"files": []}), 400, "invalid-api-params"),
    # -- NUL bytes and invalid code points inside JSON strings
    ("create-name-nul", dict(method="POST", path="/session", body={"name": "ok\x00name", "image": "python"}), 400, "invalid-api-params"),
    ("create-name-surrogate", dict(method="POST", path="/session", body=b'{"name": "ok\\udcffname", "image": "python"}'), 400, "invalid-api-params"),
    ("download-surrogate", dict(method="POST", path=P + "/download", body=b'{"files": ["a\\udcff"]}'), 400, "invalid-api-params"),
    ("single-nul", dict(method="POST", path=P + "/download_single", body={"file": "a\x00b"}), 400, "invalid-api-params"),
    ("files-nul", dict(method="POST", path=P + "/files", body={"path": "a\x00b"}), 400, "invalid-api-params"),
    ("upload-nul-filename", dict(method="POST", path=P + "/upload", multipart=[("a\x00b.txt", b"x")]), 400, "invalid-api-params"),
    ("upload-malformed-multipart", dict(method="POST", path=P + "/upload", body=b"--x\r\ngarbage", content_type="multipart/form-data; boundary=x"), 400, "invalid-api-params"),
]


@pytest.fixture(scope="module")
def target(server):
    client = server.client()
    client.create_session("python", name=S)
    # a symlink out of the session's directory, made by user code
    result = client.execute(S, "query", "import os\nos.symlink('/etc', 'escape')\nos.symlink('/etc/passwd', 'passwd-link')")
    assert result["status"] == "finished" and result["exitCode"] == 0, result
    yield client
    client.destroy_session(S)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(server, target, case):
    _, kwargs, status, slug = case
    kwargs = dict(kwargs)
    if callable(kwargs.get("date")):  # dates are made when the case runs, not at import
        kwargs["date"] = kwargs["date"]()
    if "multipart" in kwargs:
        kwargs["body"], kwargs["content_type"] = multipart(kwargs.pop("multipart"))
    headers = kwargs.pop("headers", {})
    drop = tuple(k for k, v in headers.items() if v == "")  # "" means: leave the header out
    headers = {k: v for k, v in headers.items() if v != ""}
    response = server.signed_request(kwargs.pop("method"), kwargs.pop("path"), headers=headers,
                                     drop_headers=drop, **kwargs)
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith(protocol.PROBLEM_CONTENT_TYPE)
    problem = response.json()
    assert problem["type"] == protocol.PROBLEM_BASE + slug, problem
    assert server.secret_key not in response.text
    assert server.alive()


def test_server_keeps_serving_after_bad_input(server, target):
    print(f"{len(CASES)} bad-input cases")
    assert len(CASES) >= 60
    assert requests.get(server.url + "/", timeout=10).json()["version"] == protocol.SERVER_API_VERSION
    result = target.execute(S, "query", "print('fine')")
    assert result["console"] == [["stdout", "fine\n"]]
    # nothing escaped the session's directory
    import os
    assert not os.path.exists("/tmp/evil.txt")
    assert not os.path.exists(os.path.join(os.path.dirname(server.root), "evil.txt"))


def test_run_ids_of_other_sessions_and_stale_run_ids_are_refused(server, target):
    """A runId is only good for its own session and its own run: another session's runId, and a
    finished run's id once a newer run replaced it, are refused as unknown runs."""
    other = "bad2-" + uuid.uuid4().hex[:8]
    target.create_session("python", name=other)
    try:
        foreign = target.execute(other, "query", "x = 1")["runId"]
        first = target.execute(S, "query", "y = 1")["runId"]
        target.execute(S, "query", "y = 2")  # a newer run replaces the finished one
        for label, run_id in (("foreign", foreign), ("stale", first)):
            for mode in ("continue", "input"):
                response = server.signed_request("POST", P, body={"mode": mode, "code": "", "runId": run_id, "options": {}})
                assert response.status_code == 400, (label, mode, response.text[:300])
                assert response.json()["type"] == protocol.PROBLEM_BASE + "invalid-api-params"
        # and the other session is untouched by all this
        assert target.execute(other, "query", "print(x)")["console"] == [["stdout", "1\n"]]
    finally:
        target.destroy_session(other)


def test_signature_covers_query_string(server, target):
    ok = server.signed_request("GET", P + "?x=1")
    assert ok.status_code == 200
    bad = server.signed_request("GET", P + "?x=1", sign_path=P + "?x=2")
    assert bad.status_code == 401
    # X-BackendAI-Date is accepted instead of Date
    date = signing.format_date()
    r = server.signed_request("GET", P, date=date, headers={"Date": "garbage", "X-BackendAI-Date": date})
    assert r.status_code == 200, r.text


def raw_exchange(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a hand-made request on a fresh connection; everything the server answers until it
    closes the connection."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=20) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("how", ["expect-100-continue", "beyond-drain-limit"])
def test_oversized_declared_body_is_refused_without_reading_it(server, target, how):
    """A client waiting for ``100 Continue`` (curl does, for big bodies), or one declaring more
    than the server would ever read, gets the 413 problem at once, and the connection closes."""
    length = 30 * 1024 * 1024 if how == "expect-100-continue" else 4 * 1024 ** 3
    expect = "Expect: 100-continue\r\n" if how == "expect-100-continue" else ""
    answer = raw_exchange(server.url, f"POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{expect}\r\n",
                          b"" if expect else b"x" * 1000)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert f"Content-Type: {protocol.PROBLEM_CONTENT_TYPE}".encode() in head
    import json
    problem = json.loads(body)
    assert problem["type"] == protocol.PROBLEM_BASE + "invalid-api-params" and str(length) in problem["msg"]
    assert target.execute(S, "query", "print('still')")["console"] == [["stdout", "still\n"]]
