"""The presence store's role: channel membership visible on every node, and its contract.

Presence is kept per peer, not per connection: a peer with two tabs in a channel is one
member, present until its last connection leaves. Each entry counts the peer's connections so
the node can tell a peer's first join from a second tab's, and a last leave from a tab closing.
``hubbub.brokers.memory`` keeps it in one process, ``hubbub.brokers.redis_stores`` in Redis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    peer_id: str
    metadata: bytes | None  # the peer's peerMetadata as raw JSON


@dataclass(frozen=True, slots=True)
class PresenceDelta:
    app_id: str
    channel: str
    subject: str  # the peer this delta is about; its own connections do not receive it
    joined: tuple[PresenceEntry, ...]
    left: tuple[PresenceEntry, ...]


class PresenceStore(ABC):
    """Channel membership keyed by peer, with a connection count per peer (multi-tab)."""

    @abstractmethod
    async def add(self, app_id: str, channel: str, entry: PresenceEntry, connection_id: str) -> int:
        """Add ``connection_id`` of ``entry.peer_id`` to the channel's members.

        Returns how many connections of that peer were present before: 0 means the peer has
        just joined (the node announces it). Adding a connection already present changes
        nothing but the metadata. The newest connection's ``entry.metadata`` describes the peer
        from now on. Stores that emit lifecycle events emit ``channel_occupied`` for a
        channel's first member and ``member_added`` for a peer's first connection, once each
        however many nodes race. Raises ``BrokerUnavailable`` when the store cannot be reached
        (nothing was added)."""

    @abstractmethod
    async def remove(self, app_id: str, channel: str, peer_id: str, connection_id: str) -> int:
        """Remove ``connection_id`` of ``peer_id`` from the channel.

        Returns how many connections of that peer remain: 0 means the peer has left (the node
        announces it), also when it was not present at all. ``member_removed`` and, for the
        last member, ``channel_vacated`` are emitted once. A store that cannot reach its
        backend keeps the removal and applies it when the backend is back; it never makes a
        peer linger."""

    @abstractmethod
    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        """Peers present in the channel, in join order, each once with its newest metadata.
        Raises ``BrokerUnavailable`` when the store cannot be reached."""

    async def count(self, app_id: str, channel: str) -> int:
        """How many peers are present (backends override this with a cheaper read)."""
        return len(await self.members(app_id, channel))
