"""The abuse bounds of one client session (conversation spec section 11), the same on both
transports: a message rate, the length of a text input, and a deadline for ``auth``.

The message rate is a token bucket like the realtime protocol's, charged by size as well as by
count (one token per message, one more per started ``cost_bytes``), so that a flood of large
messages runs it empty long before it can grow the store or the server's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubbub.core.ratelimit import TokenBucket


@dataclass(frozen=True, slots=True)
class SessionLimits:
    rate_per_s: float = 100.0  # 0 disables the rate limit
    rate_burst: int = 200
    cost_bytes: int = 65_536
    max_text_input_chars: int = 10_000  # 0: no limit
    # A set_var (or stageVariables) that would make the stage's variables longer than this as
    # JSON is refused.
    max_variables_bytes: int = 1_048_576  # 0: no limit
    auth_timeout_s: float = 10.0  # 0: no deadline


class MessageRate:
    """One session's bucket; ``allow`` says whether a message of ``size`` may be handled."""

    __slots__ = ("_bucket", "_cost_bytes")

    def __init__(self, limits: SessionLimits, now: float) -> None:
        enabled = limits.rate_per_s > 0 and limits.rate_burst > 0
        self._bucket = TokenBucket(limits.rate_burst, limits.rate_per_s, now) if enabled else None
        self._cost_bytes = max(1, limits.cost_bytes)

    def allow(self, size: int, now: float) -> bool:
        if self._bucket is None:
            return True
        return self._bucket.take(now, 1.0 + size // self._cost_bytes)


DEFAULT_SESSION_LIMITS = SessionLimits()
