"""Typed errors of the remote API, and the mapping from an error response to one of them.

Servers answer failures with ``application/problem+json`` bodies (docs/PROTOCOL.md#errors). We
branch on the problem *type* slug, never on the title, and fall back on the HTTP status when the
slug is unknown or the body is not a problem document (a proxy's HTML page, for instance).

No error ever carries request headers, so neither the secret key nor a signature can leak
through a message.
"""

from __future__ import annotations

import json
from typing import Any

from remote_kernel import protocol

_MAX_BODY_IN_MESSAGE = 300


class StreamUnavailable(Exception):
    """The server has no websocket execute endpoint (``lasting``), or refuses the upgrade for now
    (busy, rate limit: the REST transport waits those out): use the REST loop.

    Raised before anything was sent, so falling back never runs code twice (client/stream.py)."""

    def __init__(self, reason: str, lasting: bool = True):
        super().__init__(reason)
        self.lasting = lasting


class ConfigError(ValueError):
    """The client configuration is unusable (bad env value, unsupported endpoint type...)."""


class APIError(Exception):
    """Base of every failure talking to the remote API.

    ``endpoint`` is the base URL that failed, ``request`` the call ("POST /session/x"), ``status`` the HTTP status (None
    when there was no answer), ``slug`` the problem type's last segment, ``title``/``msg``/``data``
    what the server said, and ``hint`` what the user can do about it.
    """

    hint = "see the server's logs for details"

    def __init__(
        self,
        endpoint: str | None = None,
        status: int | None = None,
        slug: str | None = None,
        title: str | None = None,
        msg: str | None = None,
        data: Any = None,
        hint: str | None = None,
        *,
        request: str | None = None,
    ):
        self.endpoint = endpoint
        self.request = request
        self.status = status
        self.slug = slug
        self.title = title
        self.msg = msg
        self.data = data
        if hint is not None:
            self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        cause = " ".join(
            part for part in (
                str(self.status) if self.status is not None else None,
                f"[{self.slug}]" if self.slug else None,
                self.title,
            ) if part
        )
        if self.msg and self.msg != self.title:
            cause = f"{cause}: {self.msg}" if cause else self.msg
        where = self.endpoint or "remote API"
        if self.request:
            where = f"{self.request} at {where}"
        return f"{where}: {cause or type(self).__name__} ({self.hint})"


class AuthenticationError(APIError):
    hint = "check BACKEND_ACCESS_KEY / BACKEND_SECRET_KEY and the machine's clock"


class Forbidden(APIError):
    """403 ``generic-forbidden``: the server refuses this call, e.g. destroying a session that is
    still being scheduled or prepared (real managers want ``forced`` then)."""

    hint = "the server refused this call for the session as it is now (see the message)"


class InvalidRequestError(APIError):
    hint = "the request was rejected as invalid; check the arguments"


class NotFoundError(APIError):
    hint = "check the endpoint URL and the API version"


class SessionNotFound(NotFoundError):
    hint = "the session is gone (destroyed, timed out or never created); start a new one"


class ImageNotFound(NotFoundError):
    hint = "choose another image (ask the server which images it offers)"


class SessionAlreadyExists(APIError):
    hint = "the session name is taken with another image; choose another name or destroy it"


class QuotaExceeded(APIError):
    hint = "a resource or session limit is reached; destroy unused sessions or ask for less"


class RateLimited(APIError):
    hint = "too many requests; wait and try again"

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerBusy(APIError):
    hint = "the server is busy, frozen or out of capacity; try again later"


class ServerError(APIError):
    hint = "the server or its agent failed; retry, and see the server's logs if it persists"


class MethodNotAllowed(APIError):
    hint = "the server does not support this call at this API version"


class ConnectionFailed(APIError):
    """``causes``: ``(endpoint, why)`` for each endpoint tried, when none could be reached."""

    hint = "start the server or check BACKEND_ENDPOINT (every endpoint was tried)"

    def __init__(self, *args: Any, causes: list[tuple[str, str]] | None = None, **kwargs: Any):
        self.causes = list(causes or [])
        reasons = {why for _, why in self.causes}
        if reasons and all(why.startswith("TLS ") for why in reasons) and not kwargs.get("hint"):
            # the server answered: starting it is not the cure (the reason names the settings)
            kwargs["hint"] = "the server is up but its certificate was not accepted"
        if len(reasons) == 1 and not kwargs.get("msg"):
            kwargs["msg"] = reasons.pop()  # the same for all: said once, after the endpoints
        super().__init__(*args, **kwargs)

    def _message(self) -> str:
        if len({why for _, why in self.causes}) < 2:
            return super()._message()
        # each endpoint named once, with its own reason
        where = f"{self.request} at " if self.request else ""
        return f"{where}{'; '.join(f'{url}: {why}' for url, why in self.causes)} ({self.hint})"


class RequestTimeout(APIError):
    hint = "the server did not answer in time; raise BACKEND_READ_TIMEOUT or check the server"


class BadResponse(APIError):
    hint = "the server's answer is not what the API specifies; check the endpoint URL"


# slug → class, docs/PROTOCOL.md#errors. ``object-not-found`` is resolved by context (see below).
SLUG_CLASSES: dict[str, type[APIError]] = {
    "auth-failed": AuthenticationError,
    "invalid-auth-params": AuthenticationError,
    "generic-forbidden": Forbidden,
    "invalid-api-params": InvalidRequestError,
    "generic-bad-request": InvalidRequestError,
    "session-not-found": SessionNotFound,
    "kernel-not-found": SessionNotFound,
    "url-not-found": NotFoundError,
    "generic-not-found": NotFoundError,
    "image-not-found": ImageNotFound,
    "method-not-allowed": MethodNotAllowed,
    "deprecated": MethodNotAllowed,  # e.g. a download by GET, which newer managers take by POST only
    "session-already-exists": SessionAlreadyExists,
    "kernel-already-exists": SessionAlreadyExists,
    "quota-exceeded": QuotaExceeded,
    "rate-limit-exceeded": RateLimited,
    "kernel-creation-failed": ServerError,
    "kernel-execution-failed": ServerError,
    "kernel-destruction-failed": ServerError,
    "kernel-restart-failed": ServerError,
    "internal-server-error": ServerError,
    "server-frozen": ServerBusy,
    "service-unavailable": ServerBusy,
    "instance-not-available": ServerBusy,
}

_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: Forbidden,
    404: NotFoundError,
    405: MethodNotAllowed,
    412: QuotaExceeded,
    413: InvalidRequestError,  # a body over the limit, from our server or a proxy in front of one
    429: RateLimited,
    503: ServerBusy,
}


def class_for(status: int | None, slug: str | None, creating_session: bool = False) -> type[APIError]:
    if slug == "object-not-found":
        # The same slug names a missing image (on create) or a missing session (elsewhere).
        return ImageNotFound if creating_session else SessionNotFound
    if slug in SLUG_CLASSES:
        return SLUG_CLASSES[slug]
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status is not None and status >= 500:
        return ServerError
    return APIError


def slug_of(problem_type: Any) -> str | None:
    if not isinstance(problem_type, str) or not problem_type:
        return None
    if problem_type.startswith(protocol.PROBLEM_BASE):
        return problem_type[len(protocol.PROBLEM_BASE):].strip("/") or None
    return problem_type.rstrip("/").rsplit("/", 1)[-1] or None


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta form) or ``X-RateLimit-Window``."""
    for name in ("Retry-After", "X-RateLimit-Window"):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            seconds = float(str(value).strip())
        except ValueError:
            continue  # an HTTP-date Retry-After: let the caller use its own backoff
        if seconds >= 0:
            return seconds
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_BODY_IN_MESSAGE else text[:_MAX_BODY_IN_MESSAGE] + "…"


def error_from_response(endpoint: str | None, response: Any, creating_session: bool = False) -> APIError:
    """Turn a non-2xx ``requests.Response`` into the matching :class:`APIError` subclass."""
    status = getattr(response, "status_code", None)
    slug = title = msg = None
    data: Any = None
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and ("type" in body or "title" in body):
        slug = slug_of(body.get("type"))
        title = body.get("title") if isinstance(body.get("title"), str) else None
        raw_msg = body.get("msg", body.get("detail"))
        msg = raw_msg if isinstance(raw_msg, str) else (json.dumps(raw_msg) if raw_msg else None)
        data = body.get("data")
        agent = body.get("agent-details")
        if isinstance(agent, dict) and agent.get("title"):
            msg = f"{msg + '; ' if msg else ''}agent: {agent.get('title')}"
    else:
        title = getattr(response, "reason", None) or None
        text = getattr(response, "text", "") or ""
        msg = _short(text) if text.strip() else None
        data = body if body is not None else None
    cls = class_for(status, slug, creating_session)
    kwargs: dict[str, Any] = {}
    if cls is RateLimited:
        kwargs["retry_after"] = retry_after_seconds(getattr(response, "headers", None))
    request = getattr(response, "request", None)
    if request is not None and getattr(request, "method", None):
        kwargs["request"] = f"{request.method} {getattr(request, 'path_url', '')}".strip()
    return cls(endpoint, status, slug, title, msg, data, **kwargs)
