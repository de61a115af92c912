"""``requests`` auth hook that signs every request the Backend.AI way
(docs/PROTOCOL.md#signing-requests).

The HMAC itself lives in :mod:`remote_kernel.signing`, shared with the server; this module only
collects, from the prepared request, the exact strings the server will see.

It also signs the body, in our extension header ``X-RemoteKernel-Body-Signature``
(docs/PROTOCOL.md#our-extensions-body-signatures).  Every call of the hook signs afresh with a Date later than the last one it signed (to the
microsecond), so no two requests share a signature: a server that refuses replays
(docs/PROTOCOL.md#replays) accepts each.  The transport's retries go through the hook again.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlsplit

import requests

from remote_kernel import protocol, signing

_DEFAULT_PORTS = {"http": 80, "https": 443}
BODYLESS_CONTENT_TYPE = "text/plain"


def host_header(url: str) -> str:
    """The ``Host`` value requests/urllib3 send for ``url``: host plus any non-default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal: http.client brackets it
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host


class BackendAIAuth(requests.auth.AuthBase):
    """Sets ``Date``, ``X-BackendAI-Version``, ``Content-Type`` (if none) and ``Authorization``.

    ``version`` is the negotiated API version; the client updates it after ``GET /``.  ``clock``
    returns the moment to sign (tests fix it to reproduce a vector).
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        version: str = protocol.CLIENT_API_VERSION,
        clock: Callable[[], datetime] | None = None,
    ):
        self.access_key = access_key
        self._secret_key = secret_key
        self.version = version
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._last: datetime | None = None
        self._lock = threading.Lock()  # the kernel signs from more than one thread

    def __repr__(self) -> str:  # the secret stays out of reprs and logs
        return f"BackendAIAuth(access_key={self.access_key!r}, version={self.version!r})"

    def _moment(self) -> datetime:
        """The clock's time, or 1 µs after the last Date signed if the clock has not moved on."""
        moment = self._clock()
        with self._lock:
            if self._last is not None and moment <= self._last:
                moment = self._last + timedelta(microseconds=1)
            self._last = moment
        return moment

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body
        streamed = False
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is None:
            body = b""
        elif not isinstance(body, (bytes, bytearray)):
            # Streamed bodies cannot be hashed: no body signature, and no body hash for
            # pre-v4.20181215 servers.
            body, streamed = b"", True
        content_type = request.headers.get("Content-Type")
        if not content_type:
            content_type = BODYLESS_CONTENT_TYPE
            request.headers["Content-Type"] = content_type
        host = request.headers.get("Host") or host_header(request.url or "")
        date_value = signing.format_date(self._moment())
        sig = signing.sign(
            self._secret_key,
            request.method or "GET",
            request.path_url,
            date_value,
            host,
            content_type,
            self.version,
            bytes(body),
        )
        request.headers["Date"] = date_value
        request.headers["X-BackendAI-Version"] = self.version
        request.headers["Authorization"] = signing.authorization_header(self.access_key, sig)
        if not streamed:  # our extension; servers that do not know it ignore it
            request.headers[protocol.BODY_SIGNATURE_HEADER] = signing.body_signature(
                self._secret_key, date_value, host, sig, bytes(body))
        return request
