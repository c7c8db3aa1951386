"""Per-key rate limit: a token bucket per API key, per gateway replica.

Per replica keeps the hot path free of network calls; with N replicas behind a balancer the effective
limit is up to N × the configured rate, which ops size for (docs/architecture.md).
"""

from __future__ import annotations

import math
import time

from laoke.kit.errors import TooManyRequests


class TokenBuckets:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate = rate_per_second
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0 if allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_seconds: float) -> str:
        return str(max(1, math.ceil(wait_seconds)))

    def enforce(self, key: str, what: str = "this API key") -> None:
        """Take a token for `key` or refuse with 429 and when to retry."""
        wait = self.take(key)
        if wait:
            raise TooManyRequests(
                f"rate limit exceeded for {what}", headers={"Retry-After": self.retry_after_header(wait)}
            )
