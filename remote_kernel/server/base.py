"""``BaseHandler``: API-version check, HMAC authentication, JSON body parsing, and every
failure → problem+json (docs/PROTOCOL.md#signing-requests, docs/PROTOCOL.md#errors).  Nothing
a client sends can make it answer 500.

Requests are authenticated from their headers alone, before any byte of the body is read (the
signature does not cover the body): a refused request is answered at once and its body, if any,
is read and dropped, never kept (so that a client still sending reads the answer; the server's
``body_timeout`` bounds a slow one).  Handlers stream their bodies (``stream_request_body``), and
every HTTP method of a handler runs only once its body is complete (``_after_body``)."""

from __future__ import annotations

import functools
import json
import logging
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

import tornado.web
from tornado import httputil

from remote_kernel import jsonio, protocol, signing
from remote_kernel.server import replay
from remote_kernel.server.errors import APIProblem, bad_params

log = logging.getLogger("remote_kernel.server")

CLOCK_SKEW = timedelta(minutes=15)
_DECOY_SECRET = secrets.token_urlsafe(30)  # no client has it
_KNOWN_MAJORS = frozenset(signing.parse_version(v)[0] for v in protocol.KNOWN_API_VERSIONS)
_STATUS_SLUGS = {
    400: ("invalid-api-params", "Missing or invalid API parameters."),
    401: ("auth-failed", "Credential/signature mismatch."),
    404: ("url-not-found", "Unknown URL path."),
    405: ("method-not-allowed", "HTTP Method Not Allowed."),
    413: ("invalid-api-params", "Request body too large."),
}


def check_version(value: str | None) -> str:
    if not value:
        raise APIProblem(400, "generic-bad-request", "Unsupported API (major) version.",
                       "the X-BackendAI-Version header is missing")
    try:
        major, _ = signing.parse_version(value)
    except ValueError:
        raise APIProblem(400, "generic-bad-request", "Unsupported API (major) version.",
                       "malformed X-BackendAI-Version header") from None
    if major not in _KNOWN_MAJORS:
        raise APIProblem(400, "generic-bad-request", "Unsupported API (major) version.",
                       f"major version {major} is not supported")
    if signing.parse_version(value) < signing.BODYLESS_SIGNING_SINCE:
        raise APIProblem(400, "generic-bad-request", "Unsupported API (major) version.",
                         f"versions before {protocol.OLDEST_SUPPORTED_API_VERSION} sign the body; this server "
                         "authenticates requests before it reads their bodies")
    return value


def _after_body(method):
    """A handler's HTTP method, run once the body is complete; for a request refused from its
    headers (answered already), only the end of that answer."""
    if getattr(method, "_after_body", False):
        return method

    @functools.wraps(method)
    def run(self: "BaseHandler", *args: Any, **kwargs: Any) -> Any:
        if self._refusal is not None:
            if not self._finished:
                self.finish()
            return None
        self._complete_body()
        return method(self, *args, **kwargs)

    run._after_body = True  # type: ignore[attr-defined]
    return run


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    authenticated = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.SUPPORTED_METHODS:  # tornado's defaults (405) too: they may follow a refusal
            method = getattr(cls, name.lower(), None)
            if method is not None:
                setattr(cls, name.lower(), _after_body(method))

    def initialize(self, state: Any) -> None:
        self.state = state  # app.ServerState: config, manager
        self.access_key: str | None = None
        self.api_version: str | None = None
        self._json_body: Any = None
        self._chunks: list[bytes] | None = []  # None once the body is complete
        self._refusal: APIProblem | None = None
        self._replay_entry: tuple | None = None  # what the replay cache accepted for this request
        self._body_check: tuple | None = None  # what the body signature is checked with

    def set_default_headers(self) -> None:
        self.set_header("Server", "remote-kernel")

    def check_xsrf_cookie(self) -> None:  # signed API, no cookies
        pass

    def prepare(self) -> None:
        if not self.authenticated:
            return
        try:
            self.api_version = check_version(self.request.headers.get("X-BackendAI-Version"))
            self.access_key = self._authenticate()
        except APIProblem as error:
            self._refuse(error)

    def on_finish(self) -> None:
        # refused without effect ("not now"): the identical request may come again, as urllib3's
        # Retry (which the official SDK and our client use for these) re-sends it unchanged
        if self._replay_entry is not None and self.get_status() in (429, 503):
            self.state.replay.forget(*self._replay_entry)

    def _refuse(self, error: APIProblem) -> None:
        """Answer now, before the body: it is dropped as it arrives (data_received)."""
        self._refusal = error
        payload = json.dumps(error.problem()).encode()
        self.clear()
        self.set_status(error.status)
        self.set_header("Content-Type", protocol.PROBLEM_CONTENT_TYPE)
        self.set_header("Content-Length", str(len(payload)))
        self.write(payload)
        self.flush()

    def data_received(self, chunk: bytes) -> None:
        # only an authenticated request keeps its body; an unauthenticated handler reads none
        if self._refusal is None and self.authenticated and self._chunks is not None:
            self._chunks.append(chunk)

    def _complete_body(self) -> None:
        """``request.body`` (and ``request.files`` of a multipart body), as tornado fills them
        for handlers that do not stream."""
        if self._chunks is None:
            return
        body, self._chunks = b"".join(self._chunks), None
        request = self.request
        request.body = body
        if self._body_check is not None:
            *key, given = self._body_check
            if not signing.signatures_match(signing.body_signature(*key, body), given.strip().lower()):
                raise APIProblem(401, "auth-failed", "Credential/signature mismatch.",
                                 f"the body does not match its {protocol.BODY_SIGNATURE_HEADER}")
        if body:
            try:
                httputil.parse_body_arguments(request.headers.get("Content-Type", ""), body,
                                              request.body_arguments, request.files, request.headers)
            except httputil.HTTPInputError as exc:
                raise bad_params(f"malformed body: {exc}") from None
            for name, values in request.body_arguments.items():
                request.arguments.setdefault(name, []).extend(values)

    def _authenticate(self) -> str:
        headers = self.request.headers
        try:
            credential = signing.parse_authorization(headers.get("Authorization"))
        except signing.AuthHeaderError as exc:
            if not headers.get("Authorization"):
                raise APIProblem(401, "auth-failed", "Credential/signature mismatch.", "no Authorization header")
            raise APIProblem(400, "invalid-auth-params", "Missing or invalid authorization parameters.", str(exc))
        date_value = headers.get("X-BackendAI-Date") or headers.get("Date")
        if not date_value:
            raise APIProblem(400, "invalid-auth-params", "Missing or invalid authorization parameters.",
                           "missing Date header")
        try:
            moment = signing.parse_date(date_value)
        except (ValueError, OverflowError):
            raise APIProblem(400, "invalid-auth-params", "Missing or invalid authorization parameters.",
                           "malformed Date header") from None
        if abs(datetime.now(timezone.utc) - moment) > CLOCK_SKEW:
            raise APIProblem(400, "invalid-auth-params", "Missing or invalid authorization parameters.",
                           "the Date header is more than 15 minutes off the server's clock")
        # An unknown access key is checked against a secret nobody has, so that it gets the answer
        # (and takes the time) of a wrong signature: neither tells which access keys exist.
        secret = self.state.config.keys.get(credential.access_key, _DECOY_SECRET)
        try:
            expected = signing.sign(secret, self.request.method, self.request.uri, date_value,
                                    headers.get("Host", ""), headers.get("Content-Type"),
                                    self.api_version)  # from v4.20181215 on the body is not signed
        except (ValueError, OverflowError, UnicodeError):
            raise APIProblem(400, "invalid-auth-params", "Missing or invalid authorization parameters.",
                           "cannot compute the signature of this request") from None
        if not signing.signatures_match(expected, credential.signature):
            raise APIProblem(401, "auth-failed", "Credential/signature mismatch.",
                             "unknown access key or wrong signature")
        body_sig = headers.get(protocol.BODY_SIGNATURE_HEADER)
        if body_sig is None and self.state.config.require_body_signature:
            raise APIProblem(401, "auth-failed", "Credential/signature mismatch.",
                             f"this server requires a body signature ({protocol.BODY_SIGNATURE_HEADER}, which "
                             "remote_kernel's client sends)")
        if body_sig is not None:  # checked once the body is in (_complete_body)
            self._body_check = (secret, date_value, headers.get("Host", ""), credential.signature, body_sig)
        # a signature is good once: a request seen before is a replay (docs/PROTOCOL.md#replays)
        self._replay_entry = (credential.signature, body_sig, moment.timestamp())
        verdict = self.state.replay.admit(*self._replay_entry)
        if verdict == replay.REPLAYED:
            self._replay_entry = None
            raise APIProblem(401, "auth-failed", "Credential/signature mismatch.",
                             "this signature was used before (a replay); sign every request afresh")
        if verdict == replay.TOO_OLD:
            self._replay_entry = None
            raise APIProblem(400, "invalid-auth-params", "Missing or invalid authorization parameters.",
                             "the Date header is older than the requests this server still remembers; "
                             "sign with the current time")
        return credential.access_key

    # -- request helpers ---------------------------------------------------------------------

    def json_body(self, required: bool = True) -> dict:
        """The body as a JSON object (older clients send JSON on GET too)."""
        if self._json_body is not None:
            return self._json_body
        raw = self.request.body or b""
        if len(raw) > self.state.config.max_json_body:
            raise bad_params(f"JSON bodies are limited to {self.state.config.max_json_body} bytes",
                             title="Request body too large.")
        if not raw.strip():
            if required:
                raise bad_params("a JSON object body is required")
            self._json_body = {}
            return self._json_body
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise bad_params("the body is not valid UTF-8") from None
        except (ValueError, RecursionError):
            raise bad_params("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_params("the body must be a JSON object")
        self._json_body = body
        return body

    def family(self) -> str:
        return "/kernel" if self.request.path.startswith("/kernel") else "/session"

    def session(self, ident: str, allow_dead: bool = False, activity: bool = True, starting: bool = False):
        if "\x00" in ident:
            raise bad_params("session names must not contain NUL bytes")
        return self.state.manager.find(self.access_key, ident, self.family(), allow_dead, activity, starting)

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(jsonio.dumps(body))

    # -- errors ------------------------------------------------------------------------------

    def send_problem(self, error: APIProblem) -> None:
        self.clear()
        self.set_status(error.status)
        self.set_header("Content-Type", protocol.PROBLEM_CONTENT_TYPE)
        self.finish(json.dumps(error.problem()))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, APIProblem):
            self.send_problem(exc)
            return
        if isinstance(exc, tornado.web.HTTPError) and status_code in _STATUS_SLUGS:
            slug, title = _STATUS_SLUGS[status_code]
            self.send_problem(APIProblem(status_code, slug, title, exc.log_message if status_code != 401 else None))
            return
        if status_code >= 500:
            slug, title = "internal-server-error", "Something went wrong on the server."
        else:
            slug, title = _STATUS_SLUGS.get(status_code, ("generic-bad-request", "Bad request."))
        self.send_problem(APIProblem(status_code, slug, title))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, APIProblem):
            if value.status >= 500:
                log.warning("%s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, APIProblem):
            self.log_exception(type(e), e, e.__traceback__)
            if not self._finished:
                self.send_problem(e)
            return
        super()._handle_request_exception(e)


class NotFoundHandler(BaseHandler):
    authenticated = False

    def prepare(self) -> None:
        raise APIProblem(404, "url-not-found", "Unknown URL path.")
