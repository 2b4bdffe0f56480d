"""The hub of one process: connections, subscriptions, presence, routing, limits.

Everything a connection receives goes through its :class:`ConnectionSink` (one FIFO), and
every state change that decides what others see happens before the frames that depend on it
are queued, which is how the presence ordering rules of spec section 5 hold:

* a newcomer's ``joined`` is queued to the members before its ``ack`` and snapshot;
* the snapshot is queued after the ack as a separate write (``push_after_pause``), and any
  presence delta that arrives for the channel before the snapshot is held back behind it;
* ``left`` is emitted when a peer's last connection leaves a channel (unsubscribe or close).

The node talks to other nodes only through the :class:`Broker` it was given, and the broker
calls back into it through the :class:`BrokerHandler` methods (``deliver_*``).

The node is the composition root of one process's hub; its roles live beside it: subscribing
and presence in :mod:`hubbub.core.membership`, publish and send in :mod:`hubbub.core.messaging`,
the ``error``/``ack`` replies in :mod:`hubbub.core.replies`. This module keeps the connections'
lifecycle, the dispatch of client frames, the broker's callbacks and the control plane;
node-to-node requests are :mod:`hubbub.core.relay`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Final

from hubbub.core import listing
from hubbub.core.activity import ChannelActivity
from hubbub.core.authorizer import NO_AUTHORIZER, Authorizer
from hubbub.core.broker import (
    Broker,
    BrokerUnavailable,
    ConnectionInfo,
    Direct,
    NodeAnswer,
    NodeQuery,
    Publication,
)
from hubbub.core.connection import MIN_EXCUSED_STALL_S, Connection
from hubbub.core.events import NO_EVENTS, EventSink
from hubbub.core.history import (
    DEFAULT_DEDUP_WINDOW_S,
    HistoryPage,
    HistoryStats,
    HistoryStore,
    Published,
    Retention,
    RetentionRules,
)
from hubbub.core.lane import FrameLane
from hubbub.core.limits import NodeLimits as NodeLimits  # its old home re-exports it
from hubbub.core.limits import reconnect_window_ms
from hubbub.core.membership import Membership
from hubbub.core.messaging import Messaging
from hubbub.core.outbound import ConnectionSink, OutFrame
from hubbub.core.presence import PresenceDelta, PresenceEntry, PresenceStore
from hubbub.core.principal import EXPIRY_MARGIN_S, Principal
from hubbub.core.ratelimit import TokenBucket
from hubbub.core.relay import RelayHandler, Relays
from hubbub.core.replies import Replies
from hubbub.core.routes import LocalRoutes
from hubbub.core.stats import NodeStats
from hubbub.core.usage import AppQuota, UsageSnapshot, UsageStore
from hubbub.core.wheel import Scheduler, TimerWheel
from hubbub.protocol import frames
from hubbub.protocol.codes import CLOSE_REASONS, CloseCode, ErrorCode
from hubbub.protocol.frames import (
    ClientFrame,
    FrameError,
    Ping,
    Publish,
    Send,
    Subscribe,
    decode_client_frame,
)

log = logging.getLogger(__name__)

# Token expiries share one timer wheel: a connection closes with 4002 between
# EXPIRY_MARGIN_S and EXPIRY_MARGIN_S + EXPIRY_RESOLUTION_S before its token's exp.
EXPIRY_RESOLUTION_S: Final = 0.25
# Announced when the frame cap is disabled: the SDK refuses server frames over 1 MiB anyway.
UNCAPPED_MESSAGE_SIZE: Final = 1_048_576
_EMPTY_SNAPSHOT_TAIL: Final = b'"joined":[],"left":[]'


class Node:
    def __init__(
        self,
        *,
        node_id: str,
        broker: Broker,
        presence: PresenceStore,
        usage: UsageStore,
        limits: NodeLimits,
        quotas: Mapping[str, AppQuota],
        clock: Callable[[], float],
        scheduler: Scheduler,
        events: EventSink = NO_EVENTS,
        authorizer: Authorizer = NO_AUTHORIZER,
        history: HistoryStore | None = None,
        retention: RetentionRules | None = None,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
    ) -> None:
        self.node_id = node_id
        self._broker = broker
        self._presence = presence
        self._usage = usage
        self._limits = limits
        self._quotas = quotas
        self._clock = clock
        self._scheduler = scheduler
        self._events = events
        self._authorizer = authorizer
        self._history = history
        self._retention = retention if history is not None and retention else RetentionRules()
        self._dedup_window_s = dedup_window_s
        self._next_connection = 0
        self._connections: set[Connection] = set()
        self._no_connections = asyncio.Event()  # set while the node holds none
        self._no_connections.set()
        self._local = LocalRoutes()
        self.stats = NodeStats()
        self._pong = OutFrame(frames.PONG)
        self._activity = ChannelActivity(clock)
        self._expiries: TimerWheel[Connection] = TimerWheel(
            scheduler, clock, EXPIRY_RESOLUTION_S, self._expire
        )
        self._relays = Relays(broker)
        self._replies = Replies(self.stats)
        self._membership = Membership(
            broker=broker,
            presence=presence,
            local=self._local,
            authorizer=authorizer,
            history=history,
            retention=self._retention,
            replies=self._replies,
            max_channels=limits.max_channels,
        )
        self._messaging = Messaging(
            broker=broker,
            usage=usage,
            quota=self.quota,
            clock=clock,
            authorizer=authorizer,
            events=events,
            activity=self._activity,
            retention=self._retention,
            dedup_window_s=dedup_window_s,
            replies=self._replies,
            stats=self.stats,
        )
        # Set by announce_shutdown: from then on a closing connection is released locally
        # only when the broker's stop releases the whole node in one pass.
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._broker.start(self)

    async def stop(self) -> None:
        await self._broker.stop()

    @property
    def history_stats(self) -> HistoryStats | None:
        return self._history.stats if self._history is not None else None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def quota(self, app_id: str) -> AppQuota:
        return self._quotas.get(app_id) or AppQuota()

    @property
    def max_message_size(self) -> int:
        return self._limits.max_message_bytes or UNCAPPED_MESSAGE_SIZE

    async def open_connection(
        self, principal: Principal, sink: ConnectionSink, remote_addr: str | None = None
    ) -> Connection | None:
        """Admit an authenticated connection: quota gate, then ``welcome`` as the first frame.

        Returns None when the connection was refused (the sink has been closed with 4010).
        """
        if not await self._usage.open_connection(principal.app_id, self.quota(principal.app_id)):
            code = CloseCode.OVER_CONCURRENT_LIMIT
            sink.close(code, CLOSE_REASONS[code])
            self.stats.connections_refused += 1
            self.stats.closes[code] += 1
            return None
        self.stats.connections_opened += 1
        self._next_connection += 1
        now = self._clock()
        limits = self._limits
        conn = Connection(
            id=f"{self.node_id}:{self._next_connection}",
            principal=principal,
            sink=sink,
            bucket=(
                TokenBucket(limits.rate_burst, limits.rate_per_second, now)
                if limits.rate_burst > 0
                else None
            ),
            ping_bucket=(
                TokenBucket(limits.ping_burst, limits.ping_rate_per_second, now)
                if limits.ping_burst > 0
                else None
            ),
            presence_entry=PresenceEntry(principal.peer_id, principal.peer_metadata),
            remote_addr=remote_addr,
            connected_at=now,
            frames_out=1,  # the welcome
        )
        self._connections.add(conn)
        self._no_connections.clear()
        authorizer = self._authorizer
        if authorizer.covers_subscribe(principal) or authorizer.covers_publish(principal):
            conn.lane = FrameLane(
                lambda frame: self._handle_queued(conn, frame), limits.max_pending_frames
            )
        sink.push(
            OutFrame(
                frames.welcome(
                    principal.peer_id,
                    principal.expires_at,
                    int(now),
                    self.max_message_size,
                    principal.welcome_metadata,
                )
            )
        )
        if principal.expires_at is not None:
            conn.expiry_slot = self._expiries.add(conn, principal.expires_at - EXPIRY_MARGIN_S)
        if self._local.add_peer_connection(conn):
            try:
                await self._broker.register_peer(conn.app_id, conn.peer_id)
            except BrokerUnavailable:
                log.warning("broker unavailable: peer %s not registered for directs", conn.peer_id)
        return conn

    def _expire(self, conn: Connection) -> None:
        self._close(conn, CloseCode.TOKEN_EXPIRED)

    def _close_over_rate(self, conn: Connection) -> None:
        if not (conn.closed or conn.closing):
            log.warning(
                "closing app=%s peer=%s: over the message rate (close 4011)",
                conn.app_id,
                conn.peer_id,
                extra={"event": "rate_limited", "app": conn.app_id, "peer": conn.peer_id},
            )
        self._close(conn, CloseCode.OVER_MESSAGE_RATE)

    def _close(self, conn: Connection, code: CloseCode, reason: str | None = None) -> None:
        if conn.closed or conn.closing:
            return
        conn.closing = True
        self.stats.closes[code] += 1
        conn.sink.close(code, reason or CLOSE_REASONS[code])

    async def close_connection(self, conn: Connection) -> None:
        """The transport lost the connection: leave every channel, release everything."""
        if conn.closed:
            return
        conn.closed = True
        if conn.expiry_slot is not None:
            self._expiries.remove(conn, conn.expiry_slot)
            conn.expiry_slot = None
        if conn.lane is not None:
            await conn.lane.stop()  # the frame a backend is deciding completes first
        if self._stopping and self._broker.releases_node_on_stop:
            self._release_locally(conn)
            return
        subscriptions, conn.subscriptions = conn.subscriptions, {}
        for channel, sub in subscriptions.items():
            try:
                await self._membership.drop(conn, channel, sub)
            except BrokerUnavailable:
                log.warning("broker unavailable while %s left %s", conn.peer_id, channel)
        self._forget(conn)
        if self._local.remove_peer_connection(conn):
            try:
                await self._broker.unregister_peer(conn.app_id, conn.peer_id)
            except BrokerUnavailable:
                log.warning("broker unavailable: peer %s not unregistered", conn.peer_id)
        await self._usage.close_connection(conn.app_id)

    def _release_locally(self, conn: Connection) -> None:
        """Forget a connection of a stopping node without a broker round trip: its presence
        (and the ``left`` the other nodes see), its usage count and its broker interest go
        in the broker's one pass at stop, however many connections there were (a restart
        of a node with 5,000 would otherwise queue ~15,000 commands before it can exit)."""
        subscriptions, conn.subscriptions = conn.subscriptions, {}
        for channel, sub in subscriptions.items():
            if sub.pattern is None:
                self._local.remove_channel_member(conn, channel)
            else:
                self._local.remove_pattern_member(conn, channel)
        self._forget(conn)
        self._local.remove_peer_connection(conn)

    def _forget(self, conn: Connection) -> None:
        self._connections.discard(conn)
        if not self._connections:
            self._no_connections.set()  # whichever way the last one was released

    def announce_shutdown(self, base_retry_ms: int = 1000, reconnects_per_s: float = 0) -> None:
        """Tell every client to come back later; jitter spreads their reconnects (over a
        window that grows with the number of clients when ``reconnects_per_s`` is set).
        The node is stopping from here on (see :meth:`_release_locally`)."""
        self._stopping = True
        window_ms = reconnect_window_ms(base_retry_ms, len(self._connections), reconnects_per_s)
        for conn in list(self._connections):
            retry_ms = base_retry_ms + random.randint(0, window_ms)
            conn.frames_out += 1
            conn.sink.push(OutFrame(frames.going_away(retry_ms)))

    def close_all(self, code: CloseCode, reason: str | None = None) -> None:
        for conn in list(self._connections):
            self._close(conn, code, reason)

    async def until_no_connections(self) -> None:
        """Return once the node holds no connection (at once when it holds none); the
        caller bounds the wait (a shutdown gives closing clients a few seconds)."""
        await self._no_connections.wait()

    # --- client frames --------------------------------------------------------------------

    async def handle_frame(self, conn: Connection, payload: str | bytes) -> None:
        if conn.closed or conn.closing:
            return
        self.stats.frames_received += 1
        conn.frames_in += 1
        frame = decode_client_frame(payload)
        if isinstance(frame, Ping):
            if conn.ping_bucket is not None and not conn.ping_bucket.take(self._clock()):
                self._close_over_rate(conn)
                return
            conn.frames_out += 1
            conn.sink.push(self._pong)
            return
        started = self._clock()
        if conn.bucket is not None and not conn.bucket.take(started):
            self._close_over_rate(conn)
            return
        if isinstance(frame, FrameError):
            self._replies.error(conn, frame.code, frame.request_id, frame.message)
            return
        if conn.lane is not None:
            await conn.lane.put(frame)
        else:
            await self._handle(conn, frame)
        # The transport reads this connection's next frame only once this one's handling
        # returns: time spent here (the broker's answer, a full lane) is time the server did
        # not read, and what the client sent meanwhile is not a burst of its own making.
        ended = self._clock()
        if ended - started >= MIN_EXCUSED_STALL_S:  # checked here: no call per frame
            conn.excuse_stall(ended - started, ended)

    async def _handle_queued(self, conn: Connection, frame: ClientFrame) -> None:
        if not (conn.closed or conn.closing):
            await self._handle(conn, frame)

    async def _handle(self, conn: Connection, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            return
        try:
            if isinstance(frame, Publish):
                await self._messaging.publish(conn, frame)
            elif isinstance(frame, Send):
                await self._messaging.send(conn, frame)
            elif isinstance(frame, Subscribe):
                await self._membership.subscribe(conn, frame)
            else:
                await self._membership.unsubscribe(conn, frame)
        except BrokerUnavailable:
            self._replies.error(conn, ErrorCode.BACKEND_ERROR, frame.request_id)
        except Exception:
            log.exception("unexpected error handling a %s frame", type(frame).__name__)
            self._replies.error(conn, ErrorCode.INTERNAL_ERROR, frame.request_id)

    async def handle_binary_frame(self, conn: Connection) -> None:
        """The protocol is JSON text frames only; binary ones count as malformed."""
        if conn.closed or conn.closing:
            return
        conn.frames_in += 1
        if conn.bucket is not None and not conn.bucket.take(self._clock()):
            self._close_over_rate(conn)
            return
        self._replies.error(
            conn, ErrorCode.MALFORMED_MESSAGE, None, "binary frames are not supported"
        )

    def retention(self, app_id: str, channel: str) -> Retention | None:
        """The history kept for a concrete channel (None: it keeps none)."""
        return self._retention.for_channel(app_id, channel)

    # --- deliveries from the broker (BrokerHandler) ---------------------------------------

    def deliver_publication(self, publication: Publication) -> int:
        reached = self._local.deliver_publication(publication)
        self.stats.deliveries += reached
        return reached

    def deliver_direct(self, direct: Direct) -> int:
        reached = self._local.deliver_direct(direct)
        if reached:
            self.stats.directs += 1
        return reached

    def deliver_presence(self, delta: PresenceDelta) -> None:
        self._local.deliver_presence(delta)

    def disconnect_local_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        return self._local.disconnect_peer(app_id, peer_id, code, reason)

    def answer_query(self, query: NodeQuery) -> NodeAnswer:
        if query.subject == "relay":
            return NodeAnswer(self.node_id, relayed=self._relays.answer(query.topic, query.payload))
        return listing.local_answer(
            self.node_id, query, self._connections, self._local, self._activity
        )

    # --- server-side operations (REST control plane) --------------------------------------

    async def publish_from_server(
        self,
        app_id: str,
        channel: str,
        data: bytes,
        sender: str = "server",
        sender_metadata: bytes | None = None,
    ) -> int:
        published = await self.publish_as_server(app_id, channel, data, sender, sender_metadata)
        return published.reached

    async def publish_as_server(
        self,
        app_id: str,
        channel: str,
        data: bytes,
        sender: str = "server",
        sender_metadata: bytes | None = None,
        message_id: str | None = None,
    ) -> Published:
        """A REST publish: counted everywhere, recorded like a client's (spec 16.1, 16.2)."""
        publication = Publication(app_id, channel, sender, data, sender_metadata, None)
        return await self._messaging.publish_as_server(publication, message_id)

    async def channel_history(
        self, app_id: str, channel: str, *, since: int | None, limit: int
    ) -> HistoryPage | None:
        """Retained publications of a channel (REST): after ``since``, else the newest
        ``limit``; None when the channel keeps no history."""
        retention = self.retention(app_id, channel)
        if retention is None or self._history is None:
            return None
        return await self._history.read(app_id, channel, retention, after=since, limit=limit)

    async def channel_members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        return await self._presence.members(app_id, channel)

    async def kick_peer(self, app_id: str, peer_id: str) -> int:
        code = CloseCode.ADMIN_DISCONNECT
        closed = await self._broker.disconnect_peer(app_id, peer_id, code, CLOSE_REASONS[code])
        log.info(
            "kicked app=%s peer=%s: %d connection(s) closed with 4020",
            app_id,
            peer_id,
            closed,
            extra={"event": "kick", "app": app_id, "peer": peer_id, "closed": closed},
        )
        return closed

    async def usage(self, app_id: str) -> UsageSnapshot:
        return await self._usage.snapshot(app_id, self.quota(app_id), self._clock())

    # --- node-to-node requests ------------------------------------------------------------

    def handle_relay(self, topic: str, handler: RelayHandler) -> None:
        """Answer this node's part of :meth:`relay` requests on ``topic`` (see core.relay)."""
        self._relays.handle(topic, handler)

    async def relay(self, app_id: str, topic: str, payload: bytes) -> list[bytes]:
        """Ask every node, this one first, as the listings do (see :mod:`hubbub.core.relay`)."""
        return await self._relays.ask(app_id, topic, payload)

    async def publish_event(self, app_id: str, channel: str, data: bytes, sender: str) -> int:
        """A publication the server makes on its own behalf (the conversation bus): recorded
        when the channel keeps history, not counted against the app's message quota, and not
        waiting for other nodes' delivery counts. Returns the local deliveries."""
        publication = Publication(app_id, channel, sender, data, None, None)
        published = await self._messaging.hand_over(publication, None)
        self._activity.published(app_id, channel)
        return published.reached

    # --- listings (REST control plane, cluster-wide) --------------------------------------

    async def list_connections(
        self,
        app_id: str,
        *,
        channel: str | None = None,
        peer_id: str | None = None,
        limit: int = listing.DEFAULT_LIMIT,
    ) -> list[ConnectionInfo]:
        """The app's connections on every node, by peer id then age (see :mod:`listing`)."""
        query = NodeQuery(app_id, "connections", channel=channel, peer_id=peer_id, limit=limit)
        return listing.merge_connections(await self._broker.query_nodes(query), limit)

    async def list_channels(
        self,
        app_id: str,
        *,
        prefix: str | None = None,
        limit: int = listing.DEFAULT_LIMIT,
        patterns: tuple[str, ...] = (),
    ) -> list[listing.ChannelSummary]:
        """The app's channels with subscribers or recent publications, on every node
        (only those matching one of ``patterns`` when given)."""
        query = NodeQuery(app_id, "channels", prefix=prefix, limit=limit, patterns=patterns)
        merged = listing.merge_channels(await self._broker.query_nodes(query), limit)
        return await listing.with_peer_counts(merged, app_id, self._presence)

    async def list_nodes(self, app_id: str) -> list[NodeAnswer]:
        """Every node that answered, with the app's connection and channel counts there."""
        return await self._broker.query_nodes(NodeQuery(app_id, "nodes"))
