"""Request rate limits per API token: a token bucket in the service process.

Why: one runaway script (a polling loop without sleep, a retry storm) must not take the service
from every other user.  Each token gets a bucket of ``burst`` requests refilled at ``rate`` per
second; a request finding it empty is answered 429 with ``Retry-After``.  The buckets live in
this process: behind N replicas a token's effective limit is N times the configured one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

#: Most buckets kept; the least recently used are forgotten (a forgotten bucket is full).
MAX_BUCKETS = 100_000


class RateLimiter:
    """Token buckets keyed by an opaque string (the token's hash); thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, *, now: float | None = None) -> float:
        """Spend one request of ``key``'s bucket: 0.0 if allowed, else the seconds until one
        request is available again."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return wait
