"""A node's limits per connection, with their defaults (the one place they are written: the
configuration file's ``[limits]`` reads them from here), and the pace of reconnects it asks
for when it shuts down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeLimits:
    rate_per_second: float = 100.0
    rate_burst: int = 200
    # Pings have a bucket of their own (spec decision 8): the SDK pings every 25 s, so 20 with
    # 2/s refill never bites a real client, while a ping flood is closed 4011 like any flood.
    ping_rate_per_second: float = 2.0
    ping_burst: int = 20
    max_message_bytes: int = 65536
    max_channels: int = 100
    # Frames a proxied connection may have waiting for its backend before reading pauses.
    max_pending_frames: int = 32


def reconnect_window_ms(base_retry_ms: int, connections: int, reconnects_per_s: float) -> int:
    """How widely ``going_away`` spreads its ``retryAfterMs`` past ``base_retry_ms``: at
    least ``base_retry_ms``, and long enough that ``connections`` clients drawing uniformly
    from it reconnect at about ``reconnects_per_s`` (a storm a node can welcome)."""
    if reconnects_per_s <= 0:
        return base_retry_ms
    return max(base_retry_ms, round(connections * 1000 / reconnects_per_s))
