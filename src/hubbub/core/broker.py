"""The broker's role: reaching the connections on other nodes, and its contract.

A :class:`~hubbub.core.node.Node` owns the connections of one process. Everything that must
reach connections on *other* nodes goes through a :class:`Broker`; membership that must be
visible cluster-wide lives in a :class:`~hubbub.core.presence.PresenceStore`; counters that
quotas need live in a :class:`~hubbub.core.usage.UsageStore` (one file per role). The memory
implementations (``hubbub.brokers.memory``) make one process a complete server; the Redis ones
make many processes one server. Core never imports either. The presence and usage names are
re-exported here for the modules that import them from their old home.

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
from hubbub.core.presence import PresenceDelta, PresenceEntry, PresenceStore
from hubbub.core.usage import AppQuota, UsageSnapshot, UsageStore
from hubbub.errors import CoreError

__all__ = [
    "AppQuota",
    "Broker",
    "BrokerHandler",
    "BrokerUnavailable",
    "ChannelInfo",
    "ConnectionInfo",
    "Direct",
    "NodeAnswer",
    "NodeQuery",
    "PresenceDelta",
    "PresenceEntry",
    "PresenceStore",
    "Publication",
    "UsageSnapshot",
    "UsageStore",
]


class BrokerUnavailable(CoreError):
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
    """What a broker calls back into (implemented by the node), on the event loop."""

    def deliver_publication(self, publication: Publication) -> int:
        """Write it to the local subscribers (not its origin connection); returns how many."""
        ...

    def deliver_direct(self, direct: Direct) -> int:
        """Write it to the local connections of ``direct.to``; returns how many."""
        ...

    def deliver_presence(self, delta: PresenceDelta) -> None:
        """Tell the channel's local subscribers (not the subject's own connections)."""
        ...

    def disconnect_local_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        """Close the peer's local connections with ``code``; returns how many were closed."""
        ...

    def answer_query(self, query: NodeQuery) -> NodeAnswer:
        """This node's answer to a listing question, from its own connections."""
        ...


class Broker(ABC):
    # True when ``stop`` removes, in one pass, everything this node listed in the presence
    # store (announcing ``left`` to the other nodes) and counted in the usage store: a
    # stopping node may then release its connections locally only, not one by one.
    releases_node_on_stop: bool = False

    @abstractmethod
    async def start(self, handler: BrokerHandler) -> None:
        """Connect and deliver to ``handler`` from now on. A backend that cannot be reached
        yet does not fail the start: the broker keeps trying and requests meanwhile raise
        :class:`BrokerUnavailable`."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering and leave nothing of this node behind in a shared backend."""

    @abstractmethod
    async def watch_channel(self, app_id: str, channel: str) -> None:
        """This node gained its first local subscriber of ``channel``: from when this returns,
        every publication and presence delta of the channel reaches the handler. On
        :class:`BrokerUnavailable` the node refuses the subscribe and calls
        :meth:`unwatch_channel`."""

    @abstractmethod
    async def unwatch_channel(self, app_id: str, channel: str) -> None:
        """This node lost its last local subscriber of ``channel``; never raises (a backend
        that is down has nothing to undo)."""

    @abstractmethod
    async def watch_pattern(self, app_id: str, pattern: str) -> None:
        """Like :meth:`watch_channel` for a wildcard pattern: every publication on a channel
        of the app that the pattern may match reaches the handler (the node's own matcher
        chooses, so a broker may deliver more than the pattern matches, never less). Calls
        are counted: each ``watch_pattern`` is undone by one ``unwatch_pattern``."""

    @abstractmethod
    async def unwatch_pattern(self, app_id: str, pattern: str) -> None:
        """Undo one :meth:`watch_pattern`; never raises."""

    @abstractmethod
    async def register_peer(self, app_id: str, peer_id: str) -> None:
        """This node has its first connection of ``peer_id``: directs and kicks for the peer
        reach the handler from now on. During an outage the registration is kept and made
        when the backend is back (it does not raise)."""

    @abstractmethod
    async def unregister_peer(self, app_id: str, peer_id: str) -> None:
        """This node closed its last connection of ``peer_id``; never raises."""

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
    async def publish_presence(self, delta: PresenceDelta) -> None:
        """Deliver a presence delta to every node watching the channel (this one included),
        ordered with the sender's later publishes and directs. A ``left`` that cannot reach
        the backend is not lost: the presence store kept it and announces it on recovery."""

    @abstractmethod
    async def send_direct(self, direct: Direct) -> int:
        """Deliver to every connection of ``direct.to`` on every node except the origin
        connection; returns how many it reached (0: the peer is on no node)."""

    @abstractmethod
    async def disconnect_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        """Close every connection of the peer on every node; returns how many were closed."""

    @abstractmethod
    async def query_nodes(self, query: NodeQuery) -> list[NodeAnswer]:
        """Every node's answer (this node's first), as many as answered within a short wait."""
