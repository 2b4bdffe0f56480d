"""Interfaces that backends implement, and their contracts.

A :class:`~hubbub.core.node.Node` owns the connections of one process. Everything that must
reach connections on *other* nodes goes through a :class:`Broker`; membership that must be
visible cluster-wide lives in a :class:`PresenceStore`; counters that quotas need live in a
:class:`UsageStore`. The memory implementations (``hubbub.brokers.memory``) make one process a
complete server; the Redis ones make many processes one server. Core never imports either.

Contract for every Broker:

* Deliveries come back through the :class:`BrokerHandler` the node registered in
  :meth:`Broker.start`, on the event loop, once per node that has local interest.
* ``publish`` delivers to every node that watches the channel or a pattern matching it
  (including the calling node, through the same handler) and returns the number of
  connections reached when it can count them.
* ``send_direct`` reaches every connection of the target peer on every node (except the
  origin connection) and returns how many it reached; 0 means the peer is not online.
* Messages from one sender are delivered in the order they were handed to the broker.
* ``publish_presence`` delivers a delta to every node watching the channel, ordered with
  the sender's later publishes and directs.
* ``publish_recorded`` records a publication in the channel's history and/or claims its
  message id, atomically with delivering it (the contract is in :mod:`hubbub.core.history`).
* ``query_nodes`` asks every node (the calling one included, through
  :meth:`BrokerHandler.answer_query`) about its own connections and returns the answers that
  arrived within a short wait: a node that died holding the question is left out.
* A failure to hand a request over raises :class:`BrokerUnavailable` (clients see
  ``backend_error``); the node's local state stays consistent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol

from hubbub.core.history import Published, Recording, StreamPosition


class BrokerUnavailable(Exception):
    """The backend could not accept the request right now (transient)."""


@dataclass(frozen=True, slots=True)
class Publication:
    app_id: str
    channel: str
    sender: str
    data: bytes  # raw JSON
    sender_metadata: bytes | None  # raw JSON object, or None
    origin_connection: str | None  # the publishing connection, which gets no echo
    # On channels with history: the publication's offset and epoch (spec 16.1).
    position: StreamPosition | None = None


@dataclass(frozen=True, slots=True)
class Direct:
    app_id: str
    to: str
    sender: str
    data: bytes
    sender_metadata: bytes | None
    origin_connection: str | None


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


@dataclass(frozen=True, slots=True)
class NodeQuery:
    """A question every node answers from its own connections (the listing endpoints).

    ``connections``: the app's connections, optionally only those subscribed to ``channel``
    (a channel or a pattern, by name) or of ``peer_id``; ``channels``: the app's channels with
    local subscribers or publications, optionally starting with ``prefix``; ``nodes``: just
    the counts. Each node answers with at most ``limit`` entries, in the listing's order.
    ``relay``: ``payload`` for the handler registered under ``topic`` on each node (see
    :meth:`~hubbub.core.node.Node.relay`); a node answers with what it returned.
    """

    app_id: str
    subject: Literal["connections", "channels", "nodes", "relay"]
    channel: str | None = None
    peer_id: str | None = None
    prefix: str | None = None
    limit: int = 100
    # channels: only those matching one of these patterns (empty: any), a key's scope.
    patterns: tuple[str, ...] = ()
    topic: str = ""  # relay
    payload: bytes = b""  # relay


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    peer_id: str
    channels: tuple[str, ...]  # its subscriptions (channels and patterns), in order
    remote_addr: str | None
    connected_at: float  # Unix seconds
    node: str
    frames_in: int
    frames_out: int


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    channel: str
    subscribers: int  # connections subscribed to exactly this channel on the answering node
    messages_per_second: float  # publications made on the answering node, recent rate


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    node: str
    connections: tuple[ConnectionInfo, ...] = ()
    channels: tuple[ChannelInfo, ...] = ()
    connection_count: int = 0  # the app's open connections on the node
    channel_count: int = 0  # the app's channels with subscribers on the node
    relayed: bytes | None = None  # relay: the handler's answer (None: it had nothing to say)


class BrokerHandler(Protocol):
    """What a broker calls back into (implemented by the node)."""

    def deliver_publication(self, publication: Publication) -> int: ...

    def deliver_direct(self, direct: Direct) -> int: ...

    def deliver_presence(self, delta: PresenceDelta) -> None: ...

    def disconnect_local_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int: ...

    def answer_query(self, query: NodeQuery) -> NodeAnswer: ...


class Broker(ABC):
    # True when ``stop`` removes, in one pass, everything this node listed in the presence
    # store (announcing ``left`` to the other nodes) and counted in the usage store: a
    # stopping node may then release its connections locally only, not one by one.
    releases_node_on_stop: bool = False

    @abstractmethod
    async def start(self, handler: BrokerHandler) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def watch_channel(self, app_id: str, channel: str) -> None:
        """This node gained its first local subscriber of ``channel``."""

    @abstractmethod
    async def unwatch_channel(self, app_id: str, channel: str) -> None:
        """This node lost its last local subscriber of ``channel``."""

    @abstractmethod
    async def watch_pattern(self, app_id: str, pattern: str) -> None: ...

    @abstractmethod
    async def unwatch_pattern(self, app_id: str, pattern: str) -> None: ...

    @abstractmethod
    async def register_peer(self, app_id: str, peer_id: str) -> None:
        """This node has its first connection of ``peer_id`` (directs may now target it)."""

    @abstractmethod
    async def unregister_peer(self, app_id: str, peer_id: str) -> None: ...

    @abstractmethod
    async def publish(self, publication: Publication, *, count_everywhere: bool = False) -> int:
        """Deliver everywhere; returns how many connections it was written to on this node,
        or with ``count_everywhere`` on every node (as many as answered within a short wait,
        for brokers that span nodes)."""

    @abstractmethod
    async def publish_recorded(
        self, publication: Publication, recording: Recording, *, count_everywhere: bool = False
    ) -> Published:
        """Claim the message id and/or append to the channel's history, then deliver like
        ``publish`` (see :mod:`hubbub.core.history` for the contract)."""

    @abstractmethod
    async def publish_presence(self, delta: PresenceDelta) -> None: ...

    @abstractmethod
    async def send_direct(self, direct: Direct) -> int: ...

    @abstractmethod
    async def disconnect_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        """Close every connection of the peer on every node; returns how many were closed."""

    @abstractmethod
    async def query_nodes(self, query: NodeQuery) -> list[NodeAnswer]:
        """Every node's answer (this node's first), as many as answered within a short wait."""


class PresenceStore(ABC):
    """Channel membership keyed by peer, with a connection count per peer (multi-tab)."""

    @abstractmethod
    async def add(self, app_id: str, channel: str, entry: PresenceEntry, connection_id: str) -> int:
        """Add a connection; returns how many connections of that peer were present before."""

    @abstractmethod
    async def remove(self, app_id: str, channel: str, peer_id: str, connection_id: str) -> int:
        """Remove a connection; returns how many connections of that peer remain."""

    @abstractmethod
    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        """Peers present in the channel, in join order, each once."""

    async def count(self, app_id: str, channel: str) -> int:
        """How many peers are present (backends override this with a cheaper read)."""
        return len(await self.members(app_id, channel))


@dataclass(frozen=True, slots=True)
class AppQuota:
    max_concurrent_connections: int | None = None
    max_messages_per_period: int | None = None
    period_s: int = 30 * 24 * 3600

    def period_bounds(self, now: float) -> tuple[int, int]:
        start = int(now // self.period_s) * self.period_s
        return start, start + self.period_s


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    concurrent_now: int
    peak_concurrent: int
    messages_used: int
    period_start: int
    period_end: int


class UsageStore(ABC):
    @abstractmethod
    async def open_connection(self, app_id: str, quota: AppQuota) -> bool:
        """Count a new connection; False (and nothing counted) when the cap is reached."""

    @abstractmethod
    async def close_connection(self, app_id: str) -> None: ...

    @abstractmethod
    async def count_message(self, app_id: str, quota: AppQuota, now: float) -> bool:
        """Count one billable message (always); False when it is over the period's quota."""

    @abstractmethod
    async def snapshot(self, app_id: str, quota: AppQuota, now: float) -> UsageSnapshot: ...
