"""``ReplayCache``: the signatures a server accepted within the clock-skew window, so that a
request seen before is refused (docs/PROTOCOL.md#replays).

A signature covers the request's Date, so a replay carries the same Date as the original: entries
are kept in buckets by that Date (``granularity`` seconds each) and a lookup searches one bucket.
A bucket is dropped once every Date in it is older than the window (its requests are refused as
skewed from then on).  The cache holds at most ``capacity`` signatures: when full, it drops its
oldest bucket and from then on refuses requests dated before that bucket's end (``too old``),
which it could no longer check — so being full never lets a replay through.

Requests from our client also carry a body signature (``X-RemoteKernel-Body-Signature``), which
tells apart two requests with the same signature but different bodies (two clients with the same
keypair sending the same call in the same microsecond): such a request is a replay only when its
body signature was seen with that signature too, or when either of them came without one.
"""

from __future__ import annotations

import math
import time
from typing import Callable

ACCEPTED, REPLAYED, TOO_OLD = "accepted", "replayed", "too-old"
_KEY_CHARS = 32  # 128 bits of an HMAC-SHA256 hex digest: collisions are out of reach


class ReplayCache:
    def __init__(self, window: float, capacity: int = 65536, granularity: float = 10.0,
                 clock: Callable[[], float] = time.time):
        self.window = window
        self.capacity = capacity
        self.granularity = granularity
        self._clock = clock
        # bucket number → {signature key: None (seen without a body signature) or the body
        # signature keys seen with it}
        self._buckets: dict[int, dict[str, tuple[str, ...] | None]] = {}
        self._size = 0
        self.floor = -math.inf  # requests dated before this can no longer be checked

    def __len__(self) -> int:
        return self._size

    def admit(self, signature: str, body_signature: str | None, dated: float) -> str:
        """ACCEPTED (and remembered), REPLAYED, or TOO_OLD; ``dated`` is the request's Date."""
        self._expire(self._clock())
        if dated < self.floor:
            return TOO_OLD
        bucket = self._buckets.setdefault(self._bucket_of(dated), {})
        key, tag = signature[:_KEY_CHARS], None if body_signature is None else body_signature[:_KEY_CHARS]
        if key in bucket:
            tags = bucket[key]
            if tag is None or tags is None or tag in tags:
                return REPLAYED
            bucket[key] = tags + (tag,)
            return ACCEPTED
        bucket[key] = None if tag is None else (tag,)
        self._size += 1
        while self._size > self.capacity:
            oldest = min(self._buckets)
            self.floor = max(self.floor, (oldest + 1) * self.granularity)
            self._size -= len(self._buckets.pop(oldest))
        return ACCEPTED

    def forget(self, signature: str, body_signature: str | None, dated: float) -> None:
        """Release an accepted signature (its request was refused without effect: 429, 503), so
        that the identical request may be sent again."""
        bucket = self._buckets.get(self._bucket_of(dated))
        key = signature[:_KEY_CHARS]
        if bucket is None or key not in bucket:
            return
        tags = bucket[key]
        rest = () if tags is None or body_signature is None else \
            tuple(t for t in tags if t != body_signature[:_KEY_CHARS])
        if rest:
            bucket[key] = rest
        else:
            del bucket[key]
            self._size -= 1

    def _bucket_of(self, dated: float) -> int:
        return math.floor(dated / self.granularity)

    def _expire(self, now: float) -> None:
        # a bucket's last Date is (b + 1) * granularity; it is refused as skewed past + window
        horizon = math.floor((now - self.window) / self.granularity) - 1
        if self._buckets and min(self._buckets) <= horizon:
            for number in [b for b in self._buckets if b <= horizon]:
                self._size -= len(self._buckets.pop(number))
