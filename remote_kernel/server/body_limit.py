"""Bodies over the server's limit get a 413 problem+json, like every other refusal.

tornado enforces ``max_body_size`` while it reads a body and answers an oversized one with a
bare ``400 Bad Request`` and no body, which a client cannot tell from a malformed request.
``BodyLimit`` sits between tornado's HTTP server and the application and looks at the declared
``Content-Length`` when the headers arrive: over the limit, it takes the connection over, reads
and discards the body (a client still sending would otherwise never read the answer; up to
``DRAIN_LIMIT``, and not at all when the client waits for ``100-continue``), answers 413 and
closes the connection.  Chunked bodies have no declared length: tornado's own check stays
behind this one for them.
"""

from __future__ import annotations

import asyncio
import json
import logging

from tornado import httputil
from tornado.iostream import StreamClosedError

from remote_kernel import protocol
from remote_kernel.server.errors import APIProblem

log = logging.getLogger("remote_kernel.server")

DRAIN_LIMIT = 1 << 30  # beyond this, close without reading: the client sees a reset


class BodyLimit(httputil.HTTPServerConnectionDelegate):
    """Wraps the application given to ``HTTPServer``."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate, limit: int, timeout: float | None = None):
        self.app = app
        self.limit = limit
        self.timeout = timeout  # seconds the drain may take (the server's body_timeout)

    def start_request(self, server_conn, request_conn) -> httputil.HTTPMessageDelegate:
        return _Gate(self.app, server_conn, request_conn, self.limit, self.timeout)

    def on_close(self, server_conn) -> None:
        self.app.on_close(server_conn)


def _declared_length(headers: httputil.HTTPHeaders) -> int | None:
    try:
        return int(headers.get("Content-Length", ""))
    except ValueError:
        return None  # absent or malformed: tornado's parser decides


class _Gate(httputil.HTTPMessageDelegate):
    def __init__(self, app, server_conn, request_conn, limit: int, timeout: float | None):
        self.app, self.server_conn, self.request_conn, self.limit = app, server_conn, request_conn, limit
        self.timeout = timeout
        self.inner: httputil.HTTPMessageDelegate | None = None

    def headers_received(self, start_line, headers):
        declared = _declared_length(headers)
        if declared is not None and declared > self.limit:
            return self._refuse(start_line, headers, declared)
        self.inner = self.app.start_request(self.server_conn, self.request_conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        if self.inner is not None:
            self.inner.on_connection_close()

    async def _refuse(self, start_line, headers, declared: int) -> None:
        error = APIProblem(413, "invalid-api-params", "Request body too large.",
                         f"the body declares {declared} bytes; this server accepts at most {self.limit}")
        log.info("%s %s: refused a body of %d bytes", start_line.method, start_line.path, declared)
        body = json.dumps(error.problem()).encode()
        stream = self.request_conn.detach()  # tornado stops handling this connection
        try:
            if headers.get("Expect", "").lower() != "100-continue" and declared <= DRAIN_LIMIT:
                await asyncio.wait_for(_drain(stream, declared), self.timeout)
            await stream.write(
                b"HTTP/1.1 413 Payload Too Large\r\nServer: remote-kernel\r\n"
                + f"Content-Type: {protocol.PROBLEM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n".encode()
                + b"Connection: close\r\n\r\n" + body)
        except StreamClosedError:
            pass  # the client gave up first
        except asyncio.TimeoutError:
            log.info("%s %s: the refused body did not arrive within %g s", start_line.method, start_line.path,
                     self.timeout)
        finally:
            stream.close()


async def _drain(stream, remaining: int) -> None:
    while remaining > 0:
        remaining -= len(await stream.read_bytes(min(remaining, 1 << 20), partial=True))
