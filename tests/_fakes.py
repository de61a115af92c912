"""A scripted HTTP peer for client tests: a real ``http.server`` on a loopback port 0 that
records each request and answers from a script.  It stands in for the *remote*, not for our
code, so the client's real requests/urllib3 stack is exercised end to end."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

PROBLEM = "application/problem+json"


@dataclass
class Req:
    method: str
    path: str
    headers: dict
    body: bytes
    client: tuple = ()  # (address, port) of the client's connection

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = b""
    headers: dict = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (after reading the request)

    def encoded(self) -> tuple[bytes, dict]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body, headers


def problem(status: int, slug: str, title: str = "", **extra: Any) -> Reply:
    headers = extra.pop("headers", None) or {}
    body = {"type": f"https://api.backend.ai/probs/{slug}", "title": title or slug, **extra}
    return Reply(status, json.dumps(body).encode(), {"Content-Type": PROBLEM, **headers})


_HELD: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port nothing listens on.  It stays bound (never listening: connections are
    refused) for the rest of the test run: released, the next kernel started could take it for
    one of its own sockets, and a request to it would hang instead of being refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return sock.getsockname()[1]


class ScriptedServer:
    """``script`` is a function ``Req -> Reply`` or a list of replies consumed in order
    (the ``GET /`` version probe is answered automatically with ``version``)."""

    def __init__(self, script: Callable[[Req], Reply] | list | None = None,
                 version: str = "v8.20240915", extensions: list | None = None):
        self.requests: list[Req] = []
        self._queue = list(script) if isinstance(script, list) else None
        self._func = script if callable(script) else None
        self.version = version
        self.extensions = extensions or []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Req(self.command, self.path, {k: v for k, v in self.headers.items()}, body,
                          tuple(self.client_address))
                reply = outer._answer(req)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data, headers = reply.encoded()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _answer(self, req: Req) -> Reply:
        with self._lock:
            if req.method == "GET" and req.path == "/":
                return Reply(200, {"version": self.version, "extensions": self.extensions})
            self.requests.append(req)
            if self._func is not None:
                return self._func(req)
            if self._queue:
                reply = self._queue.pop(0)
                return reply(req) if callable(reply) else reply
            return Reply(599, {"error": "script exhausted"})

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
