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


def keep_message_dates_as_strings() -> None:
    """jupyter_client parses the two ISO dates of every kernel message it receives with
    dateutil; none of our processes reads them, and parsing them was a large share of the
    server's CPU per cell (figures in bench/README.md).  The dates stay strings.  This changes a
    library global, so only processes that are wholly ours call it: ``serve``, the bridge and
    the server's Python kernels (never ``start()``, which tests embed in their own process)."""
    from jupyter_client import session

    session.extract_dates = lambda obj: obj
