"""Token bucket with the clock passed in (sans-I/O, so tests drive time directly)."""

from __future__ import annotations

# The longest server stall a bucket excuses (see :meth:`TokenBucket.excuse`): past it, what
# a client sent while the server was not reading counts as a burst again.
MAX_EXCUSED_S = 60.0


class TokenBucket:
    """``capacity`` tokens, refilled at ``refill_per_s``; a frame takes one (or ``cost``).

    The bucket charges a frame when the server reads it. When the server itself stopped
    reading a connection for a while (its frame waited for the broker, its lane was full),
    the client's frames piled up in the socket meanwhile and are read all at once: charged at
    read time, a client that never exceeded the rate would look like a burst. :meth:`excuse`
    is told of such a stall and raises the bucket's ceiling by what the refill would have
    added during it (``refill_per_s`` x the stall, at most :data:`MAX_EXCUSED_S` of it), so
    the backlog is charged as if it had been read when it was sent. The raised ceiling falls
    back to ``capacity`` at the refill rate once the server reads again: tokens the client did
    not use during the stall are not kept for later bursts. A client that sent more than its
    rate during the stall still runs the bucket empty.
    """

    __slots__ = (
        "_capacity",
        "_excused",
        "_excused_at",
        "_last",
        "_max_excused",
        "_refill_per_s",
        "_tokens",
    )

    def __init__(
        self,
        capacity: float,
        refill_per_s: float,
        now: float,
        max_excused_s: float = MAX_EXCUSED_S,
    ) -> None:
        self._capacity = capacity
        self._refill_per_s = refill_per_s
        self._tokens = capacity
        self._last = now
        self._excused = 0.0  # tokens the ceiling is raised by, as of _excused_at
        self._excused_at = now
        self._max_excused = max_excused_s * refill_per_s

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = now - self._last
        if elapsed > 0:
            tokens = self._tokens + elapsed * self._refill_per_s
            ceiling = self._ceiling(now) if self._excused else self._capacity
            self._tokens = tokens if tokens < ceiling else ceiling
            self._last = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def excuse(self, stalled_s: float, now: float) -> None:
        """The server did not read this connection for the ``stalled_s`` seconds up to
        ``now`` (the frames read next were sent meanwhile): raise the ceiling by the refill
        of that time, so they are charged as if read when sent (see the class)."""
        if stalled_s <= 0 or self._refill_per_s <= 0:
            return
        start = now - stalled_s
        self.take(start, 0.0)  # refill up to the stall's start under the ceiling then
        # The raised ceiling does not fall while the server is not reading.
        left = self._excused_left(start) if self._excused else 0.0
        self._excused = min(left + stalled_s * self._refill_per_s, self._max_excused)
        self._excused_at = now
        self.take(now, 0.0)

    def has_token(self, now: float) -> bool:
        """Whether :meth:`take` would succeed now (takes nothing)."""
        elapsed = max(0.0, now - self._last)
        ceiling = self._ceiling(now) if self._excused else self._capacity
        return min(ceiling, self._tokens + elapsed * self._refill_per_s) >= 1.0

    def is_full(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        return self._tokens + elapsed * self._refill_per_s >= self._capacity

    def _excused_left(self, now: float) -> float:
        return max(0.0, self._excused - max(0.0, now - self._excused_at) * self._refill_per_s)

    def _ceiling(self, now: float) -> float:
        left = self._excused_left(now)
        if left <= 0:
            self._excused = 0.0  # back to capacity: take's fast path again
        return self._capacity + left


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
