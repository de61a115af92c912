"""HMAC-SHA256 request signing of the Backend.AI API — the one implementation.

Both the client (``remote_kernel.client.auth``) and the embedded server
(``remote_kernel.server``) call these functions, so a request we sign is
exactly a request we verify.  See docs/PROTOCOL.md#signing-requests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timezone

SIGN_METHOD = "HMAC-SHA256"
# Since this version the body is no longer hashed into the string to sign.
BODYLESS_SIGNING_SINCE = (4, 20181215)

_AUTH_RE = re.compile(
    r"^BackendAI\s+signMethod=(?P<method>[\w-]+),\s*credential=(?P<access>[^:\s]+):(?P<sig>[0-9a-fA-F]+)\s*$"
)
_VERSION_RE = re.compile(r"^v(\d+)\.(\d{8})$")


class AuthHeaderError(ValueError):
    """The Authorization header is not a well-formed BackendAI credential."""


@dataclass(frozen=True)
class Credential:
    sign_method: str
    access_key: str
    signature: str


def parse_version(version: str) -> tuple[int, int]:
    """``"v8.20240915"`` → ``(8, 20240915)``; ValueError if malformed."""
    m = _VERSION_RE.match(version or "")
    if not m:
        raise ValueError(f"malformed API version {version!r}")
    return int(m.group(1)), int(m.group(2))


def bare_media_type(content_type: str | None) -> str:
    """Strip parameters (``; boundary=...``) — only the bare media type is signed."""
    if not content_type:
        return "application/octet-stream"
    return content_type.split(";", 1)[0].strip().lower()


def parse_date(value: str) -> datetime:
    """Parse the ISO 8601 ``Date`` header the API uses (timezone required)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("date has no timezone")
    return parsed


def format_date(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()


def string_to_sign(
    method: str,
    path_and_query: str,
    date_value: str,
    host: str,
    content_type: str | None,
    version: str,
    body: bytes = b"",
) -> str:
    """The exact text that gets signed (docs/PROTOCOL.md#signing-requests)."""
    try:
        hashed_body = parse_version(version) < BODYLESS_SIGNING_SINCE
    except ValueError:
        hashed_body = False
    digest = hashlib.sha256(body if hashed_body else b"").hexdigest()
    return "\n".join(
        [
            method.upper(),
            path_and_query,
            date_value,
            "host:" + host,
            "content-type:" + bare_media_type(content_type),
            "x-backendai-version:" + version,
            digest,
        ]
    )


def signing_key(secret_key: str, date_value: str, host: str) -> bytes:
    """The key derived from the secret, the Date's day and the host."""
    day = parse_date(date_value).astimezone(timezone.utc).strftime("%Y%m%d")
    k1 = hmac.new(secret_key.encode(), day.encode(), hashlib.sha256).digest()
    return hmac.new(k1, host.encode(), hashlib.sha256).digest()


def signature(secret_key: str, date_value: str, host: str, text_to_sign: str) -> str:
    """Lowercase hex HMAC-SHA256 with the date- and host-derived signing key."""
    return hmac.new(signing_key(secret_key, date_value, host), text_to_sign.encode(), hashlib.sha256).hexdigest()


BODY_SIGNATURE_CONTEXT = "remote-kernel-body-v1"


def body_signature(secret_key: str, date_value: str, host: str, request_signature: str, body: bytes) -> str:
    """Our extension's ``X-RemoteKernel-Body-Signature`` (docs/PROTOCOL.md#our-extensions-body-signatures):
    HMAC-SHA256, keyed like the request's signature, over the request's signature and the
    body's SHA-256, so that the body is bound to that one request."""
    text = "\n".join([BODY_SIGNATURE_CONTEXT, request_signature.lower(), hashlib.sha256(body).hexdigest()])
    return hmac.new(signing_key(secret_key, date_value, host), text.encode(), hashlib.sha256).hexdigest()


def sign(
    secret_key: str,
    method: str,
    path_and_query: str,
    date_value: str,
    host: str,
    content_type: str | None,
    version: str,
    body: bytes = b"",
) -> str:
    text = string_to_sign(method, path_and_query, date_value, host, content_type, version, body)
    return signature(secret_key, date_value, host, text)


def authorization_header(access_key: str, sig: str) -> str:
    return f"BackendAI signMethod={SIGN_METHOD}, credential={access_key}:{sig}"


def parse_authorization(header: str | None) -> Credential:
    if not header:
        raise AuthHeaderError("missing Authorization header")
    m = _AUTH_RE.match(header.strip())
    if not m:
        raise AuthHeaderError("malformed Authorization header")
    if m.group("method") != SIGN_METHOD:
        raise AuthHeaderError(f"unsupported signMethod {m.group('method')!r}")
    return Credential(m.group("method"), m.group("access"), m.group("sig").lower())


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, so timing cannot reveal a prefix of the signature."""
    return hmac.compare_digest(expected.encode(), given.encode())
