"""A connection as the hub sees it, and its subscriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from hubbub.core.lane import FrameLane
from hubbub.core.outbound import ConnectionSink, OutFrame
from hubbub.core.presence import PresenceEntry
from hubbub.core.principal import Principal
from hubbub.core.ratelimit import TokenBucket
from hubbub.core.wheel import Cancellable
from hubbub.protocol.frames import ClientFrame
from hubbub.protocol.patterns import ChannelPattern

__all__ = ["Cancellable", "Connection", "Subscription"]

# A frame whose handling kept the server from reading its connection at least this long
# excuses the stall in the connection's buckets; shorter ones are not worth the work.
MIN_EXCUSED_STALL_S: Final = 0.001


@dataclass(slots=True, eq=False)
class Subscription:
    include_sender_metadata: bool
    pattern: ChannelPattern | None  # None for a concrete channel
    # Presence frames that arrived before this subscription's snapshot was queued.
    held_presence: list[OutFrame] | None = None
    # History channels (spec 16.1): live messages held, with their offsets, while the
    # subscription's replay is read; afterwards live copies at or below this offset (already
    # replayed, or older than the subscription) are dropped, so the seam has no duplicate.
    held_messages: list[tuple[int, OutFrame]] | None = None
    replayed_through: int = 0
    replayed_epoch: str | None = None


@dataclass(slots=True, eq=False)
class Connection:
    id: str  # unique across the cluster: "<node id>:<counter>"
    principal: Principal
    sink: ConnectionSink
    bucket: TokenBucket | None
    presence_entry: PresenceEntry
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    expiry_slot: int | None = None  # its place in the node's token-expiry wheel
    ping_bucket: TokenBucket | None = None  # pings only (spec decision 8)
    # Frames handled off the reading path, in order (only when a backend proxy decides).
    lane: FrameLane[ClientFrame] | None = None
    # closing: the node decided to close it (frames still buffered are ignored);
    # closed: the transport reported it gone and its state was released.
    closing: bool = False
    closed: bool = False
    # For the listings (GET /v1/connections): plain counters, bumped where frames pass.
    remote_addr: str | None = None
    connected_at: float = 0.0  # Unix seconds
    frames_in: int = 0  # client frames received
    frames_out: int = 0  # frames queued to its sink

    def excuse_stall(self, stalled_s: float, now: float) -> None:
        """The server did not read this connection for ``stalled_s`` up to ``now``: what the
        client sent meanwhile is charged as if read when sent (:meth:`TokenBucket.excuse`).
        Stalls under ``MIN_EXCUSED_STALL_S`` (a healthy broker's round trip) are ignored:
        a fraction of a token is not worth the work per frame."""
        if stalled_s < MIN_EXCUSED_STALL_S:
            return
        if self.bucket is not None:
            self.bucket.excuse(stalled_s, now)
        if self.ping_bucket is not None:
            self.ping_bucket.excuse(stalled_s, now)

    @property
    def app_id(self) -> str:
        return self.principal.app_id

    @property
    def peer_id(self) -> str:
        return self.principal.peer_id

    @property
    def sees_presence(self) -> bool:
        return "presence" in self.principal.actions
