"""A lean ``requests`` transport adapter for plain-HTTP endpoints on this machine (the embedded
server).

urllib3 spends CPU in layers a loopback connection never needs (pool and retry objects, header
wrappers, proxy and TLS logic) and sends the headers and the body as two segments.  This
adapter keeps a few keep-alive ``http.client`` connections, writes each request with one
``sendall`` and parses the answer with ``http.client`` itself.  What that saves a trivial cell
is measured by bench/bench_loopback.py (figures in bench/README.md); it is kept because it is
not nothing.

Failures raise the same ``requests`` exceptions ``HTTPAdapter`` raises, wrapping the same
urllib3 causes, so the transport's retry rules (``transport._not_sent`` and friends) read them
unchanged; answers go through the stock adapter's urllib3 ``Retry`` (``max_retries``) as they do
there.  Anything this adapter does not do (TLS, a proxy, a streamed body) goes to that stock
``HTTPAdapter``.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from remote_kernel.client.auth import host_header

# Headers requests adds that we replace: no compression (we would have to undo it), and the
# framing is ours to write.
_DROPPED = frozenset({"accept-encoding", "content-length", "transfer-encoding", "host", "connection"})


class LoopbackAdapter(BaseAdapter):
    def __init__(self, fallback: HTTPAdapter, max_idle: int = 4):
        super().__init__()
        self.fallback = fallback
        self.max_idle = max_idle
        self._idle: list[tuple[tuple[str, int], socket.socket]] = []
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        parts = urlsplit(request.url or "")
        if (parts.scheme != "http" or cert or any((proxies or {}).values())
                or not (body is None or isinstance(body, (bytes, bytearray)))):
            return self.fallback.send(request, stream=stream, timeout=timeout, verify=verify,
                                      cert=cert, proxies=proxies)
        connect_timeout, read_timeout = _timeouts(timeout)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        message = _encode(request, body or b"")
        retry = self.fallback.max_retries
        while True:
            answer, content = self._round_trip(address, message, request, connect_timeout, read_timeout)
            # the same urllib3 Retry decides which answers to wait out and repeat
            seen = _Answered(answer)
            if not retry.is_retry(request.method or "", answer.status, bool(answer.getheader("Retry-After"))):
                break
            try:
                retry = retry.increment(request.method, request.url, response=seen)
            except urllib3.exceptions.MaxRetryError:
                break
            retry.sleep(seen)
        return _response(request, answer, content)

    def _round_trip(self, address: tuple[str, int], message: bytes, request: requests.PreparedRequest,
                    connect_timeout: float | None, read_timeout: float | None
                    ) -> tuple[http.client.HTTPResponse, bytes]:
        sock = self._take(address)
        if sock is None:
            sock = _connect(address, connect_timeout, request)
        try:
            answer, content = _exchange(sock, message, request, read_timeout)
        except BaseException:
            sock.close()  # whatever broke the exchange (even an abandoned cell), never reuse it
            raise
        if answer.will_close:
            sock.close()
        else:
            self._give_back(address, sock)
        return answer, content

    def _take(self, address: tuple[str, int]) -> socket.socket | None:
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index][0] == address:
                    sock = self._idle.pop(index)[1]
                    break
            else:
                return None
        if _dropped(sock):  # the server closed it while idle: use a fresh one
            sock.close()
            return None
        return sock

    def _give_back(self, address: tuple[str, int], sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append((address, sock))
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, sock in idle:
            sock.close()
        self.fallback.close()


def _exchange(sock: socket.socket, message: bytes, request: requests.PreparedRequest,
              read_timeout: float | None) -> tuple[http.client.HTTPResponse, bytes]:
    """Send the request, read the whole answer; failures as the requests exceptions HTTPAdapter
    raises (before the headers: the call may have reached the server; after: a cut answer)."""
    try:
        sock.settimeout(read_timeout)
        sock.sendall(message)
        answer = http.client.HTTPResponse(sock, method=request.method)
        answer.begin()
    except socket.timeout as exc:
        raise requests.exceptions.ReadTimeout(
            urllib3.exceptions.ReadTimeoutError(None, request.url, f"Read timed out. (read timeout={read_timeout})"),
            request=request) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", exc), request=request) from exc
    try:
        return answer, answer.read()
    except socket.timeout as exc:
        raise requests.exceptions.ConnectionError(
            urllib3.exceptions.ReadTimeoutError(None, request.url, "Read timed out."), request=request) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise requests.exceptions.ChunkedEncodingError(
            urllib3.exceptions.ProtocolError(f"Connection broken: {exc!r}", exc), request=request) from exc


def _timeouts(timeout: Any) -> tuple[float | None, float | None]:
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


def _encode(request: requests.PreparedRequest, body: bytes) -> bytes:
    """Request line, headers and body as one buffer (one segment on the wire)."""
    lines = [f"{request.method} {request.path_url} HTTP/1.1",
             f"Host: {request.headers.get('Host') or host_header(request.url or '')}",
             f"Content-Length: {len(body)}", "Accept-Encoding: identity"]
    for name, value in request.headers.items():
        if name.lower() not in _DROPPED:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _connect(address: tuple[str, int], timeout: float | None, request: requests.PreparedRequest) -> socket.socket:
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except socket.timeout as exc:
        raise requests.exceptions.ConnectTimeout(
            urllib3.exceptions.ConnectTimeoutError(None, f"Connection to {address[0]} timed out."),
            request=request) from exc
    except OSError as exc:
        # what urllib3 raises for a refused or unreachable connection: nothing was sent
        raise requests.exceptions.ConnectionError(
            urllib3.exceptions.NewConnectionError(None, f"Failed to establish a new connection: {exc}"),
            request=request) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive connection is readable only if the server closed it (or broke it)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Answered:
    """What urllib3's ``Retry`` reads of an answer."""

    def __init__(self, answer: http.client.HTTPResponse):
        self.status = answer.status
        self.headers = answer.headers

    def get_redirect_location(self) -> bool:
        return False  # redirects are never followed


class _Body:
    """``Response.raw`` for an answer already read in full."""

    def __init__(self, content: bytes):
        self._content = content

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        content, self._content = self._content, b""
        return content

    def close(self) -> None:
        pass


def _response(request: requests.PreparedRequest, answer: http.client.HTTPResponse, content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = CaseInsensitiveDict(answer.getheaders())
    response.encoding = get_encoding_from_headers(response.headers)
    response.url = request.url or ""
    response.request = request
    response.raw = _Body(content)
    return response
