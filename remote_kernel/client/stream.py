"""The websocket variant of the execute loop: ``GET /stream/session/{id}/execute``
(docs/PROTOCOL.md#streaming-over-a-websocket).

A real server holds each REST ``continue`` for up to ~2 s while it collects output, so through
the REST loop output arrives in ~2 s batches.  Over the websocket it sends each result as soon
as it is flushed (~0.2 s on real managers).  One connection is one run: the client sends
``{"mode", "code", "options"}`` first, the server answers with result frames
(``status``/``console``/``exitCode``/``options``/``files``, the shape of a REST ``result``), an
input reply is a plain text frame, and the server closes after ``finished``.

:class:`StreamRun` exchanges the same bodies :class:`~remote_kernel.client.loop.RunState` asks
for, so the loop that drives it is the same as for REST.  Closing the connection before the run
ends makes the server interrupt it.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any

import requests
import websocket

from remote_kernel import protocol
from remote_kernel.client import errors
from remote_kernel.client.transport import describe_failure

log = logging.getLogger("remote_kernel.client")

# Added to the API in this version (docs: "Code Execution (Streaming)").
FIRST_STREAMING_VERSION = "v4.20181215"
# Refusals that REST would meet too: reported as they are, not taken for a missing endpoint.
_REAL_FAILURES = (errors.AuthenticationError, errors.SessionNotFound, errors.ServerError)


def streaming_supported(api_version: str) -> bool:
    return protocol.older_version(FIRST_STREAMING_VERSION, api_version) == FIRST_STREAMING_VERSION


class StreamRun:
    """One run over one websocket; ``exchange(body)`` → the next result, like a REST call."""

    def __init__(self, client: Any, name: str):
        self._client = client
        self._name = name
        self._ws: websocket.WebSocket | None = None

    # -- the loop's side ---------------------------------------------------------------------

    def exchange(self, body: dict) -> dict:
        mode = body["mode"]
        if mode in (protocol.MODE_QUERY, protocol.MODE_BATCH):
            self._open()
            self._send(json.dumps({"mode": mode, "code": body["code"], "options": body.get("options") or {}}))
        elif mode == protocol.MODE_INPUT:
            self._send(body["code"])
        elif mode != protocol.MODE_CONTINUE:
            raise ValueError(f"no {mode!r} step in a streamed run")
        return self._receive()

    def close(self) -> None:
        """End the connection; before the run finished, the server interrupts it."""
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:  # noqa: BLE001 - closing a broken connection has nothing to report
                pass

    def __enter__(self) -> "StreamRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the connection ----------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return self._client.transport.endpoint

    def _open(self) -> None:
        client = self._client
        path = "/stream" + client._path(self._name, "/execute")
        http_url = self._where + path
        # Signed like any other GET of the API: the auth hook fills in the headers.
        prepared = requests.Request("GET", http_url).prepare()
        prepared = client.auth(prepared) if client.auth is not None else prepared
        headers = [f"{k}: {v}" for k, v in prepared.headers.items() if k.lower() != "host"]
        url = "ws" + http_url[len("http"):]  # http → ws, https → wss
        transport = client.transport
        sslopt = None
        if url.startswith("wss:"):
            verify = transport.session.verify
            sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False} if verify is False else \
                ({"ca_certs": verify} if isinstance(verify, str) else {})
        try:
            self._ws = websocket.create_connection(
                url, header=headers, timeout=transport.timeout[0], sslopt=sslopt,
                enable_multithread=True, suppress_origin=True)
        except websocket.WebSocketBadStatusException as exc:
            raise self._refusal(exc, path) from None
        except (OSError, websocket.WebSocketException) as exc:
            # Nothing of the run was sent: the REST loop takes this cell, with the transport's
            # retries and fail-over to the next endpoint (which the next upgrade then uses),
            # and its clear error if the server is really unreachable.
            raise errors.StreamUnavailable(f"websocket: {describe_failure(exc)}", lasting=False) from None
        # Results can be minutes apart (a long silent cell); a dead peer shows up as a failed
        # read after the keep-alive pings below go unanswered.
        self._ws.settimeout(transport.timeout[1])

    def _refusal(self, exc: websocket.WebSocketBadStatusException, path: str) -> Exception:
        status = exc.status_code
        if status in (429, 503):  # wait-and-retry answers: the REST transport knows how to wait
            return errors.StreamUnavailable(str(status), lasting=False)
        response = requests.Response()
        response.status_code = status
        response._content = exc.resp_body if isinstance(exc.resp_body, bytes) else str(exc.resp_body or "").encode()
        response.headers.update(exc.resp_headers or {})
        error = errors.error_from_response(self._where, response)
        if isinstance(error, _REAL_FAILURES):
            return error
        log.info("no websocket execute at %s (%s): using the REST loop", self._where, error)
        return errors.StreamUnavailable(f"{status} {error.slug or ''}".strip())

    def _send(self, text: str) -> None:
        try:
            self._ws.send(text)
        except (OSError, websocket.WebSocketException) as exc:
            raise self._lost(exc) from None

    def _receive(self) -> dict:
        pinged = False
        while True:
            try:
                opcode, data = self._ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                # Results may be minutes apart (a long silent cell).  A ping the server does not
                # answer within one more read timeout means the connection is dead.
                if pinged:
                    raise self._lost("no answer to a keep-alive ping") from None
                self._keepalive()
                pinged = True
                continue
            except (OSError, websocket.WebSocketException) as exc:
                raise self._lost(exc) from None
            if opcode == websocket.ABNF.OPCODE_PONG:
                pinged = False
                continue
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise self._lost("the server closed the connection before the run finished")
            if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                continue  # ping (answered by the library), continuation
            return self._result(data)

    def _result(self, frame: bytes) -> dict:
        try:
            result = json.loads(frame)
        except ValueError:
            raise errors.BadResponse(self._where, msg=f"websocket frame is not JSON: {frame[:200]!r}") from None
        if not isinstance(result, dict):
            raise errors.BadResponse(self._where, msg="websocket frame is not an object")
        status = result.get("status")
        if status == "error":
            raise errors.InvalidRequestError(self._where, msg=str(result.get("msg") or "error"),
                                             request="websocket execute")
        if status == "server-restarting":
            raise errors.ServerBusy(self._where, msg=str(result.get("msg") or status), request="websocket execute")
        return result

    def _keepalive(self) -> None:
        try:
            self._ws.ping()
        except (OSError, websocket.WebSocketException) as exc:
            raise self._lost(exc) from None

    def _lost(self, cause: Any) -> errors.APIError:
        self.close()
        return errors.ConnectionFailed(
            self._where, msg=f"the streamed run's connection broke: {cause}", request="websocket execute",
            hint="the run's further output is lost; run the cell again if needed")
