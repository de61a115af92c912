"""Error mapping: every slug of docs/PROTOCOL.md#errors, non-problem bodies, and secret hygiene."""

from __future__ import annotations

import json

import pytest
import requests

from remote_kernel.client import errors

A5_TABLE = [
    (400, "invalid-auth-params", errors.AuthenticationError),
    (401, "auth-failed", errors.AuthenticationError),
    (400, "invalid-api-params", errors.InvalidRequestError),
    (400, "generic-bad-request", errors.InvalidRequestError),
    (404, "session-not-found", errors.SessionNotFound),
    (404, "kernel-not-found", errors.SessionNotFound),
    (404, "object-not-found", errors.SessionNotFound),
    (404, "url-not-found", errors.NotFoundError),
    (404, "generic-not-found", errors.NotFoundError),
    (405, "method-not-allowed", errors.MethodNotAllowed),
    (400, "session-already-exists", errors.SessionAlreadyExists),
    (400, "kernel-already-exists", errors.SessionAlreadyExists),
    (404, "image-not-found", errors.ImageNotFound),
    (412, "quota-exceeded", errors.QuotaExceeded),
    (429, "rate-limit-exceeded", errors.RateLimited),
    (500, "kernel-creation-failed", errors.ServerError),
    (500, "kernel-execution-failed", errors.ServerError),
    (500, "kernel-destruction-failed", errors.ServerError),
    (500, "kernel-restart-failed", errors.ServerError),
    (503, "server-frozen", errors.ServerBusy),
    (503, "service-unavailable", errors.ServerBusy),
    (503, "instance-not-available", errors.ServerBusy),
]


def response(status, body, content_type="application/problem+json", headers=None, reason="Reason"):
    r = requests.Response()
    r.status_code = status
    r.reason = reason
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r.headers["Content-Type"] = content_type
    r.headers.update(headers or {})
    r.request = requests.Request("POST", "http://h:1/session/s1").prepare()
    return r


@pytest.mark.parametrize("status,slug,cls", A5_TABLE)
def test_every_slug_maps(status, slug, cls):
    body = {"type": "https://api.backend.ai/probs/" + slug, "title": "Some title.", "msg": "detail"}
    err = errors.error_from_response("http://h:1", response(status, body))
    assert type(err) is cls
    assert (err.status, err.slug, err.title, err.msg) == (status, slug, "Some title.", "detail")
    assert err.endpoint == "http://h:1"
    text = str(err)
    assert "http://h:1" in text and "POST /session/s1" in text and slug in text and err.hint in text


def test_object_not_found_on_create_is_an_image():
    body = {"type": "https://api.backend.ai/probs/object-not-found", "title": "No such image."}
    err = errors.error_from_response("http://h:1", response(404, body), creating_session=True)
    assert isinstance(err, errors.ImageNotFound)


def test_rate_limit_retry_after_from_headers():
    body = {"type": "https://api.backend.ai/probs/rate-limit-exceeded", "title": "Rate limit exceeded."}
    err = errors.error_from_response("e", response(429, body, headers={
        "X-RateLimit-Limit": "3000", "X-RateLimit-Remaining": "0", "X-RateLimit-Window": "900"}))
    assert isinstance(err, errors.RateLimited) and err.retry_after == 900.0
    err = errors.error_from_response("e", response(429, body, headers={"Retry-After": "2"}))
    assert err.retry_after == 2.0


def test_agent_details_and_data_are_kept():
    body = {"type": "https://api.backend.ai/probs/kernel-creation-failed", "title": "Failed.",
            "data": {"x": 1}, "agent-details": {"type": "X", "title": "agent exploded"}}
    err = errors.error_from_response("e", response(500, body))
    assert err.data == {"x": 1} and "agent exploded" in err.msg


@pytest.mark.parametrize("status,cls", [
    (400, errors.InvalidRequestError), (401, errors.AuthenticationError), (404, errors.NotFoundError),
    (405, errors.MethodNotAllowed), (413, errors.InvalidRequestError), (429, errors.RateLimited),
    (502, errors.ServerError),
    (503, errors.ServerBusy), (418, errors.APIError),
])
def test_non_problem_bodies_map_by_status(status, cls):
    err = errors.error_from_response("http://h:1", response(status, b"<html>Bad Gateway</html>",
                                                            content_type="text/html", reason="Nope"))
    assert type(err) is cls
    assert err.slug is None and err.title == "Nope" and "Bad Gateway" in err.msg


def test_unknown_slug_falls_back_on_status():
    body = {"type": "https://api.backend.ai/probs/something-new", "title": "New."}
    assert type(errors.error_from_response("e", response(412, body))) is errors.QuotaExceeded
    assert type(errors.error_from_response("e", response(500, body))) is errors.ServerError


def test_subclass_relations_for_catching():
    assert issubclass(errors.SessionNotFound, errors.NotFoundError)
    assert issubclass(errors.ConnectionFailed, errors.APIError)
    assert issubclass(errors.BadResponse, errors.APIError)


def test_a_tls_failure_is_not_told_to_start_the_server():
    tls = "TLS handshake failed (check BACKEND_CA_BUNDLE or BACKEND_SKIP_SSLCERT_VALIDATION)"
    exc = errors.ConnectionFailed("https://a:1", request="GET /", causes=[("https://a:1", tls)])
    assert "start the server" not in str(exc) and "BACKEND_CA_BUNDLE" in str(exc)
    refused = errors.ConnectionFailed("http://a:1", request="GET /", causes=[("http://a:1", "Connection refused")])
    assert str(refused) == ("GET / at http://a:1: Connection refused "
                            "(start the server or check BACKEND_ENDPOINT (every endpoint was tried))")


def test_a_403_is_a_refusal_not_a_key_problem():
    """A real manager answers 403 generic-forbidden to destroying a session it still prepares."""
    assert errors.class_for(403, "generic-forbidden") is errors.Forbidden
    assert errors.class_for(403, None) is errors.Forbidden
    assert "BACKEND_SECRET_KEY" not in errors.Forbidden.hint
