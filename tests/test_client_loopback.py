"""The lean adapter the transport uses for plain-HTTP servers on this machine
(remote_kernel/client/loopback.py), over real loopback sockets.  The transport's own rules
(fail-over, retries, timeouts) run through it in test_client_transport.py and the fault tests."""

from __future__ import annotations

import json
import socket
import time

from _fakes import Reply, ScriptedServer
from _relay import Listener
from remote_kernel import signing
from remote_kernel.client import APIConfig, Client
from remote_kernel.client.loopback import LoopbackAdapter
from remote_kernel.client.transport import Transport

FINISHED = {"result": {"runId": "ab" * 16, "status": "finished", "exitCode": 0, "console": []}}


def client_for(url: str) -> Client:
    return Client(APIConfig(endpoint=[url], access_key="AK", secret_key="sk-loopback",
                            connection_timeout=2, read_timeout=10))


def test_only_plain_http_on_this_machine_gets_the_lean_adapter():
    transport = Transport(["http://127.0.0.1:8090", "https://127.0.0.1:8443", "http://api.example.com"])
    assert isinstance(transport.session.get_adapter("http://127.0.0.1:8090/session/x"), LoopbackAdapter)
    assert not isinstance(transport.session.get_adapter("https://127.0.0.1:8443/session/x"), LoopbackAdapter)
    assert not isinstance(transport.session.get_adapter("http://api.example.com/session/x"), LoopbackAdapter)


def test_request_arrives_whole_with_its_signed_headers():
    with ScriptedServer([Reply(200, FINISHED)]) as server:
        with client_for(server.url) as client:
            client.execute("rk-lb12", "query", "print('héllo')")
    req = server.requests[0]
    assert req.method == "POST" and req.path == "/session/rk-lb12"
    assert req.json()["code"] == "print('héllo')"
    assert req.headers["Host"] == f"127.0.0.1:{server.port}"
    assert req.headers["Authorization"].startswith("BackendAI signMethod=HMAC-SHA256")
    assert req.headers["Accept-Encoding"] == "identity"  # nothing to decompress
    # built without Session.request (transport._send_direct): the session's headers all the same
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"].startswith("python-requests/") and req.headers["Accept"] == "*/*"
    # and the signature is over exactly what arrived
    expected = signing.sign("sk-loopback", "POST", req.path, req.headers["Date"], req.headers["Host"],
                            req.headers["Content-Type"], req.headers["X-BackendAI-Version"], req.body)
    assert req.headers["Authorization"].endswith(f"credential=AK:{expected}")


class ClosesIdleConnections:
    """Answers one request per connection with keep-alive promised, then closes the idle
    connection shortly after, as a server's keep-alive timeout does."""

    def __init__(self) -> None:
        self.connections = 0
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
        time.sleep(0.1)
        conn.close()

    def close(self) -> None:
        self.listener.close()


def test_a_keep_alive_connection_the_server_closed_is_not_reused():
    # Reusing it would lose a non-idempotent query ("may have reached the server").
    server = ClosesIdleConnections()
    try:
        transport = Transport([server.url])
        for _ in range(3):
            response = transport.request("POST", "/session/rk-lb12", json={"mode": "query"})
            assert response.json()["result"]["status"] == "finished"
            time.sleep(0.3)  # the server has closed the idle connection by now
        assert server.connections == 3
        transport.close()
    finally:
        server.close()
