"""Token bucket with the clock passed in (sans-I/O, so tests drive time directly)."""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("_capacity", "_last", "_refill_per_s", "_tokens")

    def __init__(self, capacity: float, refill_per_s: float, now: float) -> None:
        self._capacity = capacity
        self._refill_per_s = refill_per_s
        self._tokens = capacity
        self._last = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._refill_per_s)
            self._last = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def has_token(self, now: float) -> bool:
        """Whether :meth:`take` would succeed now (takes nothing)."""
        elapsed = max(0.0, now - self._last)
        return min(self._capacity, self._tokens + elapsed * self._refill_per_s) >= 1.0

    def is_full(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        return self._tokens + elapsed * self._refill_per_s >= self._capacity


class KeyedRateLimiter:
    """One token bucket per key (an IP address, an API key), pruned when idle and full."""

    __slots__ = ("_buckets", "_capacity", "_max_keys", "_refill_per_s")

    def __init__(self, capacity: float, refill_per_s: float, max_keys: int = 100_000) -> None:
        self._capacity = capacity
        self._refill_per_s = refill_per_s
        self._buckets: dict[str, TokenBucket] = {}
        self._max_keys = max_keys

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    def allow(self, key: str, now: float) -> bool:
        if not self.enabled:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self._capacity, self._refill_per_s, now)
        return bucket.take(now)

    def would_allow(self, key: str, now: float) -> bool:
        """Whether :meth:`allow` would succeed now, without using anything up (a limiter
        that counts only failures checks before the attempt and charges after it)."""
        if not self.enabled:
            return True
        bucket = self._buckets.get(key)
        return bucket is None or bucket.has_token(now)

    def _prune(self, now: float) -> None:
        # A full bucket is indistinguishable from a fresh one, so dropping it loses nothing.
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
