"""HTTP transport: one keep-alive ``requests.Session``, endpoint fail-over, timeouts and the
few retries that are safe.

Retry policy (why: an execute ``query`` that reached the server must never run twice):

* 429 / 503: the server refused without acting; wait (``Retry-After`` / ``X-RateLimit-Window``,
  at most ``max_wait`` seconds in all) and repeat — safe for every method.  urllib3's ``Retry``,
  mounted on the adapter, does this (:class:`WaitWhenAsked`);
* connection failed before anything was sent (refused, DNS, connect timeout, TLS handshake):
  try the next endpoint, then start over with backoff — safe for every method;
* the connection broke or timed out after the request went out, or 502/504: repeat only when
  the request is idempotent (GET/HEAD/OPTIONS by default, or ``idempotent=True`` from the
  caller — e.g. a ``continue`` of a resumable run).

The last two stay here, not in the mounted ``Retry``: it retries on one host (fail-over is
across hosts), it is chosen per adapter (idempotency is per call), and it never sees a break
while the body is read (requests streams bodies), nor an answer cut short by an orderly close.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from remote_kernel import jsonio
from remote_kernel.client import errors

log = logging.getLogger("remote_kernel.client")

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WAIT_STATUSES = frozenset({429, 503})
_MOST_WAITS = 5  # even a server that always asks for 0 s is given up on
_IDEMPOTENT_RETRY_STATUSES = frozenset({502, 504})
_NOT_SENT_ERRORS = (
    urllib3.exceptions.NewConnectionError,  # refused, unreachable, DNS (NameResolutionError)
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.SSLError,
)


def _not_sent(exc: BaseException) -> bool:
    """True when the exception proves no byte of the request reached the server."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, _NOT_SENT_ERRORS):
            return True
        if isinstance(item, BaseException):
            stack.extend(item.args)
            stack.append(getattr(item, "reason", None))
            stack.append(item.__cause__)
            stack.append(item.__context__)
    return False


class WaitWhenAsked(urllib3.util.Retry):
    """urllib3's ``Retry`` for answers that say "not now" (429, 503) and nothing else: wait as
    long as ``Retry-After`` (delta or HTTP date) or ``X-RateLimit-Window`` asks, else back off,
    and give up at once — returning that answer — when the wait would pass ``max_wait`` seconds
    in all.  ``sleep`` is injectable so that tests need not wait."""

    def __init__(self, *args: Any, max_wait: float = 30.0, waited: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait
        self.waited = waited
        self._sleep = sleep

    @classmethod
    def policy(cls, *, max_wait: float, backoff: float, sleep: Callable[[float], None]) -> "WaitWhenAsked":
        return cls(total=None, connect=0, read=False, other=0, redirect=False, status=_MOST_WAITS,
                   status_forcelist=_WAIT_STATUSES, allowed_methods=None, backoff_factor=backoff,
                   raise_on_status=False, raise_on_redirect=False, max_wait=max_wait, sleep=sleep)

    def new(self, **kw: Any) -> "WaitWhenAsked":
        kw.setdefault("max_wait", self.max_wait)
        kw.setdefault("waited", self.waited)
        kw.setdefault("sleep", self._sleep)
        return super().new(**kw)

    def get_retry_after(self, response: Any) -> float | None:
        seconds = errors.retry_after_seconds(response.headers)
        if seconds is None and response.headers.get("Retry-After"):
            try:  # an HTTP date
                seconds = self.parse_retry_after(response.headers["Retry-After"])
            except urllib3.exceptions.InvalidHeader:
                return None
        return seconds

    def delay(self, response: Any) -> float:
        asked = self.get_retry_after(response)
        return self.get_backoff_time() if asked is None else asked

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> "WaitWhenAsked":
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None and error is None:
            delay = retry.delay(response)
            if self.waited + delay > self.max_wait:
                raise urllib3.exceptions.MaxRetryError(
                    _pool, url, urllib3.exceptions.ResponseError(f"asked to wait {delay:g} s"))
            retry.waited = self.waited + delay
        return retry

    def sleep(self, response: Any = None) -> None:
        delay = self.delay(response) if response is not None else self.get_backoff_time()
        if delay > 0:
            self._sleep(delay)


class Transport:
    """Sends requests to the first endpoint that answers, and remembers it."""

    def __init__(
        self,
        endpoints: Sequence[str],
        auth: requests.auth.AuthBase | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        verify: bool | str = True,
        connect_retries: int = 2,
        idempotent_retries: int = 2,
        reset_budget: float = 15.0,
        backoff: float = 0.25,
        max_wait: float = 30.0,
        pool_size: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not endpoints:
            raise errors.ConfigError("no API endpoint configured (set BACKEND_ENDPOINT)")
        for endpoint in endpoints:
            if not endpoint.lower().startswith(("http://", "https://")):
                raise errors.ConfigError(
                    f"endpoint {endpoint!r} is not an http:// or https:// URL (the endpoint 'local' means a "
                    "private embedded server, which only the kernel starts; or run `remote-kernel serve`)")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.auth = auth
        # 0 means no timeout, as in the official SDK
        self.timeout = (connect_timeout or None, read_timeout or None)
        self.connect_retries = connect_retries
        self.idempotent_retries = idempotent_retries
        # Broken connections (not timeouts) of idempotent calls are retried for this long: a
        # flaky network may break several answers in a row, and re-sending them is safe.
        self.reset_budget = reset_budget
        self.backoff = backoff
        self._sleep = sleep
        self._current = 0
        self.session = requests.Session()
        self.session.verify = verify
        if all(_is_loopback(e) for e in self.endpoints):
            # A proxy from the environment must not intercept a local (embedded) server.
            self.session.trust_env = False
        # One keep-alive pool per host; urllib3 retries only what the server asked us to wait for.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self._adapter = adapter
        self.max_wait = max_wait
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # plain JSON calls to these skip Session.request (_send_direct)
        self._local_endpoints = {e for e in self.endpoints if e.lower().startswith("http://") and _is_loopback(e)}

    @classmethod
    def from_config(cls, config: Any, auth: requests.auth.AuthBase | None = None, **kwargs: Any) -> "Transport":
        verify: bool | str = True
        if config.skip_ssl_verify:
            verify = False
        elif config.ca_bundle:
            verify = config.ca_bundle
        return cls(
            list(config.endpoint), auth,
            connect_timeout=config.connection_timeout, read_timeout=config.read_timeout,
            verify=verify, **kwargs,
        )

    @property
    def max_wait(self) -> float:
        """Seconds a call may wait in all for a server that answers 429/503."""
        return self._adapter.max_retries.max_wait

    @max_wait.setter
    def max_wait(self, seconds: float) -> None:
        self._adapter.max_retries = WaitWhenAsked.policy(max_wait=seconds, backoff=self.backoff, sleep=self._sleep)

    @property
    def endpoint(self) -> str:
        """The endpoint that answered last (or the first one, before any request)."""
        return self.endpoints[self._current]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
        idempotent: bool | None = None,
        timeout: float | tuple[float, float] | None = None,
        creating_session: bool = False,
    ) -> requests.Response:
        """Send one call; return the 2xx response or raise an :class:`errors.APIError`."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        call = f"{method} {path}"
        timeout = timeout or self.timeout
        connect_rounds = 0
        idempotent_tries = 0
        first_break: float | None = None
        while True:
            try:
                response = self._send_with_failover(
                    method, path, json=json, data=data, files=files, params=params,
                    headers=headers, auth=self.auth if authenticated else None, timeout=timeout,
                )
                if _cut_off(response):
                    raise requests.exceptions.ConnectionError("the answer was cut off before its end")
            except _NothingSent as failure:
                connect_rounds += 1
                if connect_rounds > self.connect_retries:
                    raise errors.ConnectionFailed(
                        ", ".join(self.endpoints), request=call, causes=failure.causes(),
                    ) from failure.last
                self._pause(self.backoff * 2 ** (connect_rounds - 1))
                continue
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # The request may have reached the server.
                now = time.monotonic()
                first_break = first_break if first_break is not None else now
                within_budget = (not isinstance(exc, requests.exceptions.Timeout)
                                 and now - first_break < self.reset_budget)
                if idempotent and (idempotent_tries < self.idempotent_retries or within_budget):
                    idempotent_tries += 1
                    log.debug("retrying idempotent %s after %s", call, type(exc).__name__)
                    self._pause(min(2.0, self.backoff * 2 ** (idempotent_tries - 1)))
                    continue
                note = "" if idempotent else "; not retried because it may have reached the server"
                if isinstance(exc, requests.exceptions.Timeout):
                    raise errors.RequestTimeout(
                        self.endpoint, msg=f"no answer within {_read_timeout(timeout):g} s{note}", request=call,
                    ) from None
                raise errors.ConnectionFailed(
                    self.endpoint, msg=f"connection lost: {describe_failure(exc)}{note}", request=call,
                    hint="the connection broke mid-request; check the server and the network",
                ) from None
            except requests.exceptions.RequestException as exc:  # bad URL and the like
                raise errors.ConnectionFailed(
                    self.endpoint, msg=describe_failure(exc), request=call,
                    hint="check BACKEND_ENDPOINT",
                ) from None

            status = response.status_code
            if 200 <= status < 300:
                return response
            if status in _IDEMPOTENT_RETRY_STATUSES and idempotent and idempotent_tries < self.idempotent_retries:
                idempotent_tries += 1
                response.close()
                self._pause(self.backoff * 2 ** (idempotent_tries - 1))
                continue
            raise errors.error_from_response(self.endpoint, response, creating_session=creating_session)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def _send_with_failover(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        failures: list[tuple[str, BaseException]] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._current + step) % count
            url = self.endpoints[index] + path
            try:
                if self.endpoints[index] in self._local_endpoints and _plain(kwargs):
                    response = self._send_direct(method, url, **kwargs)
                else:
                    response = self.session.request(method, url, allow_redirects=False, stream=True, **kwargs)
                _read_body(response)
            except requests.exceptions.RequestException as exc:
                if _not_sent(exc):
                    log.debug("endpoint %s unreachable: %s", self.endpoints[index], describe_failure(exc))
                    failures.append((self.endpoints[index], exc))
                    continue
                self._current = index
                raise
            if index != self._current:
                log.info("switched to API endpoint %s", self.endpoints[index])
            self._current = index
            return response
        raise _NothingSent(failures)

    def _send_direct(self, method: str, url: str, *, json: Any = None, headers: dict | None = None,
                     auth: Any = None, timeout: Any = None, **_unused: Any) -> requests.Response:
        """A plain JSON call to a server on this machine, straight to its adapter.

        ``Session.request`` would merge settings this call never has (cookies, proxies, hooks,
        parameters; requests 2.34 checks several of them against runtime Protocols) and parse
        the URL again: most of what the client spent per execute call (bench/README.md).
        The request is built as the session builds it: its default headers, then ours, the body
        as JSON, then the signature."""
        request = requests.PreparedRequest()
        request.method = method
        request.url = url
        request.headers = CaseInsensitiveDict(self.session.headers)
        request.headers.update(headers or {})
        if json is not None:
            request.body = jsonio.dumps(json)
            request.headers["Content-Type"] = "application/json"
        request.prepare_content_length(request.body)  # else requests' adapter sends the body chunked
        if auth is not None:
            request = auth(request)
        return self._adapter.send(request, stream=True, timeout=timeout, verify=self.session.verify, proxies={})


def _plain(kwargs: dict) -> bool:
    """A call with at most a JSON body and headers (no form data, files or query parameters)."""
    return kwargs.get("data") is None and kwargs.get("files") is None and not kwargs.get("params")


def _read_body(response: requests.Response) -> None:
    """Read the whole body in one call.  Without ``stream=True`` requests reads it in 10 KiB
    pieces and joins them, which was a third of the bridge's CPU for a cell printing 15 MB.
    Read errors become the requests exceptions ``Response.content`` raises."""
    try:
        body = response.raw.read(decode_content=True)
    except Exception as exc:
        response.close()  # a broken connection is not reused
        if isinstance(exc, urllib3.exceptions.ProtocolError):
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        if isinstance(exc, urllib3.exceptions.DecodeError):
            raise requests.exceptions.ContentDecodingError(exc) from exc
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            raise requests.exceptions.ConnectionError(exc) from exc
        if isinstance(exc, urllib3.exceptions.SSLError):
            raise requests.exceptions.SSLError(exc) from exc
        raise
    # what Response.content caches once it has read the body itself
    response._content = body or b""
    response._content_consumed = True
    response.close()  # the connection goes back to the keep-alive pool


def _cut_off(response: requests.Response) -> bool:
    """A 2xx answer with neither a length nor chunked framing and an empty body: http.client
    takes a connection closed mid-headers for the end of the headers, so this is a broken
    answer, not an empty success."""
    if not 200 <= response.status_code < 300 or response.status_code == 204:
        return False
    headers = response.headers
    if "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower():
        return False
    return not response.content


def _read_timeout(timeout: Any) -> float:
    return timeout[1] if isinstance(timeout, tuple) else timeout


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class _NothingSent(Exception):
    """Every endpoint failed before the request could be sent."""

    def __init__(self, failures: list[tuple[str, BaseException]]):
        super().__init__("no endpoint reachable")
        self.failures = failures
        self.last = failures[-1][1] if failures else None

    def causes(self) -> list[tuple[str, str]]:
        return [(url, describe_failure(exc)) for url, exc in self.failures]


def describe_failure(exc: BaseException) -> str:
    """A short cause without URLs' query strings or headers (no secrets live there anyway)."""
    if isinstance(exc, (requests.exceptions.SSLError, ssl.SSLError)):
        return "TLS handshake failed (check BACKEND_CA_BUNDLE or BACKEND_SKIP_SSLCERT_VALIDATION)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "nodename nor servname",
                   "Temporary failure in name resolution", "No route to host",
                   "Network is unreachable", "RemoteDisconnected", "Connection reset",
                   "Connection aborted", "Read timed out"):
        if marker in text:
            return marker
    return type(exc).__name__
