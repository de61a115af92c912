"""The requests auth hook: fixed-clock vector, headers actually sent, and a real server-side
verification of what went over the wire."""

from __future__ import annotations

from datetime import datetime, timezone

import requests

from _fakes import Reply, ScriptedServer
from remote_kernel import signing
from remote_kernel.client.auth import BackendAIAuth, host_header

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FIXED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def prepared(method, url, **kwargs):
    auth = BackendAIAuth("AKIATEST", SECRET, "v8.20240915", clock=lambda: FIXED)
    return requests.Request(method, url, auth=auth, **kwargs).prepare()


def test_auth_hook_reproduces_the_vector():
    req = prepared("POST", "http://127.0.0.1:8081/session/mysess-01", json={"mode": "query"})
    assert req.headers["Date"] == "2024-01-02T03:04:05+00:00"
    assert req.headers["X-BackendAI-Version"] == "v8.20240915"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Authorization"] == (
        "BackendAI signMethod=HMAC-SHA256, credential=AKIATEST:"
        "c63e30d6ee4e4fa51ea29b5fae7e1e08adeec70ce71ac4a870aaaf6170a88e8a")


def test_bodiless_request_sends_and_signs_text_plain():
    req = prepared("GET", "https://api.example.com/session/s1/logs?x=1")
    assert req.headers["Content-Type"] == "text/plain"
    expected = signing.sign(SECRET, "GET", "/session/s1/logs?x=1", req.headers["Date"],
                            "api.example.com", "text/plain", "v8.20240915")
    assert req.headers["Authorization"].endswith(":" + expected)


def test_multipart_keeps_boundary_but_signs_bare_type():
    req = prepared("POST", "http://h:9/session/s1/upload", files=[("src", ("a.txt", b"x"))])
    assert req.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    expected = signing.sign(SECRET, "POST", "/session/s1/upload", req.headers["Date"], "h:9",
                            "multipart/form-data", "v8.20240915")
    assert req.headers["Authorization"].endswith(":" + expected)


def test_host_header_omits_default_ports():
    assert host_header("http://Example.COM:80/x") == "example.com"
    assert host_header("https://example.com:443/x") == "example.com"
    assert host_header("https://example.com:8443/x") == "example.com:8443"
    assert host_header("http://[::1]:8081/") == "[::1]:8081"
    assert host_header("http://127.0.0.1/") == "127.0.0.1"


def test_repr_hides_secret():
    auth = BackendAIAuth("AKIATEST", SECRET)
    assert SECRET not in repr(auth) and SECRET not in str(auth)


def test_wire_headers_verify_on_the_server_side():
    """What the server receives (its own Host header, path, content type) verifies."""
    with ScriptedServer(lambda req: Reply(204)) as server:
        auth = BackendAIAuth("AKIATEST", SECRET, "v8.20240915")
        with requests.Session() as session:
            session.post(server.url + "/session/s1?a=b", json={"x": 1}, auth=auth)
            session.get(server.url + "/session/s1/logs", auth=auth)
            session.post(server.url + "/session/s1/upload", files=[("src", ("d/a.txt", b"hi"))], auth=auth)
    assert len(server.requests) == 3
    for req in server.requests:
        cred = signing.parse_authorization(req.headers["Authorization"])
        expected = signing.sign(SECRET, req.method, req.path, req.headers["Date"], req.headers["Host"],
                                req.headers.get("Content-Type"), req.headers["X-BackendAI-Version"], req.body)
        assert cred.access_key == "AKIATEST"
        assert signing.signatures_match(expected, cred.signature), req.path
    assert server.requests[1].headers["Content-Type"] == "text/plain"
