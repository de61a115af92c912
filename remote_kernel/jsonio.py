"""JSON on the hot path of the execute loop (the server's answers, the client's reading of them).

orjson encodes and decodes the megabytes a chatty cell produces several times faster than the
standard library (jupyter_client already uses it for every kernel message when it is
installed).  Where orjson refuses what ``json`` accepts (NaN or Infinity sent by some servers,
integers beyond 64 bits, keys that are not strings) the standard library takes over, so what
is accepted and what is sent stay the same.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Raises ``ValueError`` when ``data`` is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
