"""The transport over real loopback sockets: what is sent (also by the shortcut past
``Session.request``), keep-alive connections the server closed, waits a server asks for
(429/503, urllib3's Retry mounted on the adapter), endpoints that cannot be reached (each named
once), breaks after sending (only safe calls repeated), and timeouts of 0 (none)."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time

import pytest

from _fakes import Reply, ScriptedServer, closed_port, problem
from _relay import Listener
from remote_kernel import signing
from remote_kernel.client import APIConfig, Client, errors
from remote_kernel.client.transport import Transport

SECRET = "sk-retries-secret"
FINISHED = {"result": {"runId": "ab" * 16, "status": "finished", "exitCode": 0, "console": []}}
OK = Reply(200, FINISHED)


def client_for(*urls, sleeps=None, connection_timeout=2.0, read_timeout=10.0, **transport_kw):
    cfg = APIConfig(endpoint=list(urls), access_key="AK", secret_key=SECRET,
                    connection_timeout=connection_timeout, read_timeout=read_timeout)
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return Client(cfg, Transport.from_config(cfg, sleep=sleep, **transport_kw))


def test_a_json_call_arrives_whole_with_its_signed_headers():
    with ScriptedServer([OK]) as server:
        with client_for(server.url) as client:
            client.execute("rk-ln12", "query", "print('héllo')")
    req = server.requests[0]
    assert req.method == "POST" and req.path == "/session/rk-ln12"
    assert req.json()["code"] == "print('héllo')"
    # with its length: requests' adapter would send a body without one chunked
    assert req.headers["Content-Length"] == str(len(req.body)) and "Transfer-Encoding" not in req.headers
    assert req.headers["Host"] == f"127.0.0.1:{server.port}"
    # built without Session.request (transport._send_direct): the session's headers all the same
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"].startswith("python-requests/") and req.headers["Accept"] == "*/*"
    # and the signature is over exactly what arrived
    expected = signing.sign(SECRET, "POST", req.path, req.headers["Date"], req.headers["Host"],
                            req.headers["Content-Type"], req.headers["X-BackendAI-Version"], req.body)
    assert req.headers["Authorization"] == f"BackendAI signMethod=HMAC-SHA256, credential=AK:{expected}"


class ClosesIdleConnections:
    """Answers one request per connection with keep-alive promised, then closes the idle
    connection when the test says so (``close_now``), as a server's keep-alive timeout does;
    ``closed`` tells the test it did."""

    def __init__(self) -> None:
        self.connections = 0
        self.close_now = threading.Semaphore(0)
        self.closed = threading.Semaphore(0)
        self.listener = Listener(self._serve)
        self.url = f"http://127.0.0.1:{self.listener.port}"

    def _serve(self, conn: socket.socket) -> None:
        self.connections += 1
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")][0])
        while len(rest) < length:
            rest += conn.recv(65536)
        body = json.dumps({"version": "v8.20240915", **FINISHED}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.close_now.acquire(timeout=30)
        conn.close()
        self.closed.release()

    def close(self) -> None:
        self.listener.close()


def test_a_keep_alive_connection_the_server_closed_is_not_reused():
    # Reusing it would lose a non-idempotent query ("may have reached the server").
    server = ClosesIdleConnections()
    try:
        transport = Transport([server.url])
        for _ in range(3):
            response = transport.request("POST", "/session/rk-ka12", json={"mode": "query"})
            assert response.json()["result"]["status"] == "finished"
            server.close_now.release()  # the answer is read: the connection is idle in the pool
            assert server.closed.acquire(timeout=30)
        assert server.connections == 3
        transport.close()
    finally:
        server.close()


def test_a_query_the_server_refused_is_repeated_after_the_wait_it_asked_for():
    sleeps = []
    replies = [problem(429, "rate-limit-exceeded", headers={"Retry-After": "2"}),
               problem(503, "server-frozen", headers={"X-RateLimit-Window": "0.5"}), OK]
    with ScriptedServer(replies) as server:
        with client_for(server.url, sleeps=sleeps) as client:
            assert client.execute("rk-rl12", "query", "1")["status"] == "finished"
    assert sleeps == [2.0, 0.5]
    assert [r.json()["mode"] for r in server.requests] == ["query"] * 3


def test_a_wait_past_max_wait_is_not_waited_but_reported():
    sleeps = []
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)  # an HTTP-date Retry-After
    with ScriptedServer([problem(429, "rate-limit-exceeded", headers={"Retry-After": in_an_hour})]) as server:
        with client_for(server.url, sleeps=sleeps, max_wait=30) as client:
            with pytest.raises(errors.RateLimited, match="429"):
                client.execute("rk-rl12", "query", "1")
    assert sleeps == [] and len(server.requests) == 1


def test_a_retry_after_date_in_the_past_is_repeated_at_once():
    sleeps = []
    long_ago = email.utils.formatdate(time.time() - 3600, usegmt=True)
    with ScriptedServer([problem(503, "server-frozen", headers={"Retry-After": long_ago}), OK]) as server:
        with client_for(server.url, sleeps=sleeps) as client:
            assert client.execute("rk-rl12", "query", "1")["status"] == "finished"
    assert sleeps == [] and len(server.requests) == 2


def test_a_server_always_asking_for_no_wait_is_given_up_on():
    with ScriptedServer(lambda req: problem(503, "server-frozen", headers={"Retry-After": "0"})) as server:
        with client_for(server.url) as client:
            with pytest.raises(errors.ServerBusy, match="503"):
                client.execute("rk-rl12", "query", "1")
    assert len(server.requests) == 6  # the call and five repeats


def test_max_wait_set_after_construction_applies():
    # the kernel's quick client lowers it on a transport already built
    sleeps = []
    replies = [problem(429, "rate-limit-exceeded", headers={"Retry-After": "3"}), OK]
    with ScriptedServer(replies) as server:
        with client_for(server.url, sleeps=sleeps) as client:
            client.transport.max_wait = 2.0
            with pytest.raises(errors.RateLimited):
                client.execute("rk-rl12", "query", "1")
    assert sleeps == [] and client.transport.max_wait == 2.0


def test_endpoints_that_fail_alike_are_named_once_with_the_reason_once():
    urls = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
    with pytest.raises(errors.ConnectionFailed) as info:
        client_for(*urls).server_info
    text = str(info.value)
    assert text.startswith(f"GET / at {urls[0]}, {urls[1]}: Connection refused (")
    assert all(text.count(url) == 1 for url in urls) and text.count("Connection refused") == 1
    assert info.value.causes == [(urls[0], "Connection refused"), (urls[1], "Connection refused")]


def test_endpoints_that_fail_differently_are_each_named_once_with_their_reason():
    # a TLS endpoint whose peer hangs up at once: the handshake fails before anything is sent
    listener = Listener(lambda conn: conn.close())
    refused, tls = f"http://127.0.0.1:{closed_port()}", f"https://127.0.0.1:{listener.port}"
    try:
        with pytest.raises(errors.ConnectionFailed) as info:
            client_for(refused, tls).server_info
    finally:
        listener.close()
    text = str(info.value)
    assert f"{refused}: Connection refused; {tls}: TLS handshake failed" in text
    assert text.count(refused) == 1 and text.count(tls) == 1 and SECRET not in text


def test_read_timeout_zero_means_no_read_timeout():
    received, released = threading.Event(), threading.Event()

    def held(req):
        received.set()
        released.wait(30)
        return OK

    with ScriptedServer(held) as server:
        with client_for(server.url, read_timeout=0) as client:
            assert client.transport.timeout == (2.0, None)
            outcome = []
            call = threading.Thread(target=lambda: outcome.append(client.execute("rk-nt12", "query", "1")))
            call.start()
            assert received.wait(30)
            call.join(0.5)
            assert call.is_alive() and outcome == []  # still waiting: no timeout of 0 s fired
            released.set()
            call.join(30)
    assert outcome and outcome[0]["status"] == "finished"


def test_connection_timeout_zero_means_no_connect_timeout():
    assert client_for("http://127.0.0.1:1", connection_timeout=0, read_timeout=0).transport.timeout == (None, None)


def test_the_local_endpoint_is_the_kernels_not_the_clients():
    with pytest.raises(errors.ConfigError, match="'local'.*only the kernel"):
        Client(APIConfig(endpoint=["local"], access_key="AK", secret_key=SECRET))


def test_a_connection_broken_by_the_peer_mid_answer_is_retried_for_a_get_only():
    # bytes of the headers, then the peer hangs up: the call may have reached the server
    seen = []

    def cut(conn: socket.socket) -> None:
        seen.append(conn.recv(65536).split(b"\r\n", 1)[0])
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
        conn.close()

    listener = Listener(cut)
    url = f"http://127.0.0.1:{listener.port}"
    try:
        transport = Transport([url], idempotent_retries=2, reset_budget=0, sleep=lambda s: None)
        with pytest.raises(errors.ConnectionFailed, match="may have reached the server"):
            transport.request("POST", "/session/x", json={"mode": "query"})
        assert len(seen) == 1
        with pytest.raises(errors.ConnectionFailed, match="connection lost"):
            transport.request("GET", "/session/x/logs")
        assert len(seen) == 1 + 3  # the GET and its two repeats
        transport.close()
    finally:
        listener.close()
