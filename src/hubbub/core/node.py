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

History (spec 16.1): on a channel with history, a subscribe is added to the routes with its
live messages *held*, then the history is read (``since``: everything after the client's
offset; ``rewind``: the newest K; neither: just the position), then the ack (with
``recovered``/``offset``/``epoch``), the snapshot, the replay and the held live messages
newer than what was read are queued, in that order. Live copies at or below the read offset
are dropped from then on, so the seam has neither a gap nor a duplicate.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from hubbub.core import listing
from hubbub.core.activity import ChannelActivity
from hubbub.core.authorizer import NO_AUTHORIZER, Authorizer
from hubbub.core.broker import (
    AppQuota,
    Broker,
    BrokerUnavailable,
    ConnectionInfo,
    Direct,
    NodeAnswer,
    NodeQuery,
    PresenceDelta,
    PresenceEntry,
    PresenceStore,
    Publication,
    UsageSnapshot,
    UsageStore,
)
from hubbub.core.connection import Cancellable, Connection, Subscription
from hubbub.core.events import NO_EVENTS, ChannelEvent, ChannelEventName, EventSink
from hubbub.core.history import (
    DEFAULT_DEDUP_WINDOW_S,
    HistoryPage,
    HistoryStats,
    HistoryStore,
    Published,
    Recording,
    Retention,
    RetentionRules,
)
from hubbub.core.lane import FrameLane
from hubbub.core.outbound import ConnectionSink, OutFrame
from hubbub.core.principal import Principal
from hubbub.core.ratelimit import TokenBucket
from hubbub.core.recovery import published_fields, read_for, release_held, subscribe_fields
from hubbub.core.routes import LocalRoutes
from hubbub.core.stats import NodeStats
from hubbub.protocol import frames
from hubbub.protocol.codes import CLOSE_REASONS, ERROR_MESSAGES, CloseCode, ErrorCode
from hubbub.protocol.frames import (
    ClientFrame,
    FrameError,
    Ping,
    Publish,
    Send,
    Subscribe,
    Unsubscribe,
    decode_client_frame,
)
from hubbub.protocol.patterns import ChannelPattern, PatternError, compile_pattern, has_wildcard
from hubbub.protocol.validation import is_reserved_channel

log = logging.getLogger(__name__)

EXPIRY_MARGIN_S: Final = 0.25
# Announced when the frame cap is disabled: the SDK refuses server frames over 1 MiB anyway.
UNCAPPED_MESSAGE_SIZE: Final = 1_048_576
_EMPTY_SNAPSHOT_TAIL: Final = b'"joined":[],"left":[]'


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


def reconnect_window_ms(base_retry_ms: int, connections: int, reconnects_per_s: float) -> int:
    """How widely ``going_away`` spreads its ``retryAfterMs`` past ``base_retry_ms``: at
    least ``base_retry_ms``, and long enough that ``connections`` clients drawing uniformly
    from it reconnect at about ``reconnects_per_s`` (a storm a node can welcome)."""
    if reconnects_per_s <= 0:
        return base_retry_ms
    return max(base_retry_ms, round(connections * 1000 / reconnects_per_s))


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


def _detail(code: ErrorCode, channel: str) -> str | None:
    # The hosted service names the channel it refused (spec 3.3 example).
    return f"not authorized: {channel}" if code is ErrorCode.CHANNEL_NOT_AUTHORIZED else None


# A node's part of a relay request: the payload in, its answer out (None: not for this node).
RelayHandler = Callable[[bytes], bytes | None]


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
        self._local = LocalRoutes()
        self.stats = NodeStats()
        self._pong = OutFrame(frames.PONG)
        self._activity = ChannelActivity(clock)
        self._relay_handlers: dict[str, RelayHandler] = {}
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
            delay = max(0.0, principal.expires_at - EXPIRY_MARGIN_S - now)
            conn.expiry_timer = self._scheduler.call_later(delay, lambda: self._expire(conn))
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
        if conn.expiry_timer is not None:
            conn.expiry_timer.cancel()
        if conn.lane is not None:
            await conn.lane.stop()  # the frame a backend is deciding completes first
        if self._stopping and self._broker.releases_node_on_stop:
            self._release_locally(conn)
            return
        subscriptions, conn.subscriptions = conn.subscriptions, {}
        for channel, sub in subscriptions.items():
            try:
                await self._drop_subscription(conn, channel, sub)
            except BrokerUnavailable:
                log.warning("broker unavailable while %s left %s", conn.peer_id, channel)
        self._connections.discard(conn)
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
        self._connections.discard(conn)
        self._local.remove_peer_connection(conn)

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
        if conn.bucket is not None and not conn.bucket.take(self._clock()):
            self._close_over_rate(conn)
            return
        if isinstance(frame, FrameError):
            self._reply_error(conn, frame.code, frame.request_id, frame.message)
            return
        if conn.lane is not None:
            await conn.lane.put(frame)
            return
        await self._handle(conn, frame)

    async def _handle_queued(self, conn: Connection, frame: ClientFrame) -> None:
        if not (conn.closed or conn.closing):
            await self._handle(conn, frame)

    async def _handle(self, conn: Connection, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            return
        try:
            if isinstance(frame, Publish):
                await self._publish(conn, frame)
            elif isinstance(frame, Send):
                await self._send(conn, frame)
            elif isinstance(frame, Subscribe):
                await self._subscribe(conn, frame)
            else:
                await self._unsubscribe(conn, frame)
        except BrokerUnavailable:
            self._reply_error(conn, ErrorCode.BACKEND_ERROR, frame.request_id)
        except Exception:
            log.exception("unexpected error handling a %s frame", type(frame).__name__)
            self._reply_error(conn, ErrorCode.INTERNAL_ERROR, frame.request_id)

    async def handle_binary_frame(self, conn: Connection) -> None:
        """The protocol is JSON text frames only; binary ones count as malformed."""
        if conn.closed or conn.closing:
            return
        conn.frames_in += 1
        if conn.bucket is not None and not conn.bucket.take(self._clock()):
            self._close_over_rate(conn)
            return
        self._reply_error(
            conn, ErrorCode.MALFORMED_MESSAGE, None, "binary frames are not supported"
        )

    def _reply_error(
        self, conn: Connection, code: ErrorCode, request_id: str | None, message: str | None = None
    ) -> None:
        text = message or ERROR_MESSAGES[code]
        self.stats.errors[code.value] += 1
        conn.frames_out += 1
        conn.sink.push(OutFrame(frames.error(code, text, request_id)))

    def _reply_verdict(self, conn: Connection, code: str, request_id: str | None) -> None:
        """A backend's refusal: its code may be one the protocol does not define."""
        try:
            self._reply_error(conn, ErrorCode(code), request_id)
            return
        except ValueError:
            pass
        self.stats.errors[code] += 1
        conn.frames_out += 1
        conn.sink.push(OutFrame(frames.error(code, "refused by the backend", request_id)))

    def _ack(
        self, conn: Connection, request_id: str | None, fields: dict[str, object] | None = None
    ) -> None:
        if request_id is not None:
            payload = frames.ack_with(request_id, fields) if fields else frames.ack(request_id)
            conn.frames_out += 1
            conn.sink.push(OutFrame(payload))

    def retention(self, app_id: str, channel: str) -> Retention | None:
        """The history kept for a concrete channel (None: it keeps none)."""
        return self._retention.for_channel(app_id, channel)

    def _channel_refusal(self, conn: Connection, channel: str, action: str) -> ErrorCode | None:
        """The shared checks of subscribe and publish, in the spec's order (4.6: 6-8)."""
        if is_reserved_channel(channel):
            return ErrorCode.CHANNEL_RESERVED
        if action not in conn.principal.actions:
            return ErrorCode.ACTION_NOT_PERMITTED
        if not conn.principal.scope.allows_channel(channel):
            return ErrorCode.CHANNEL_NOT_AUTHORIZED
        return None

    async def _publish(self, conn: Connection, frame: Publish) -> None:
        refusal = self._channel_refusal(conn, frame.channel, "publish")
        if refusal is not None:
            self._reply_error(conn, refusal, frame.request_id, _detail(refusal, frame.channel))
            return
        data = frame.data
        if self._authorizer.covers_publish(conn.principal):
            verdict = await self._authorizer.publish(conn.principal, frame.channel, data)
            if verdict.code is not None:
                self._reply_verdict(conn, verdict.code, frame.request_id)
                return
            if verdict.data is not None:
                data = verdict.data
        if not await self._usage.count_message(conn.app_id, self.quota(conn.app_id), self._clock()):
            self._reply_error(conn, ErrorCode.OVER_MESSAGE_QUOTA, frame.request_id)
            return
        publication = Publication(
            app_id=conn.app_id,
            channel=frame.channel,
            sender=conn.peer_id,
            data=data,
            sender_metadata=conn.principal.peer_metadata,
            origin_connection=conn.id,
        )
        published = await self._hand_over(publication, frame.message_id)
        self.stats.publications += 1
        if not published.duplicate:
            self._activity.published(conn.app_id, frame.channel)
        self._ack(conn, frame.request_id, published_fields(published))
        if not published.duplicate and self._events.wants(
            conn.app_id, ChannelEventName.CLIENT_EVENT
        ):
            self._events.emit(
                ChannelEvent(
                    ChannelEventName.CLIENT_EVENT,
                    conn.app_id,
                    frame.channel,
                    user_id=conn.peer_id,
                    data=data,
                )
            )

    async def _hand_over(
        self, publication: Publication, message_id: str | None, *, count_everywhere: bool = False
    ) -> Published:
        """Give a publication to the broker: recorded when the channel keeps history or the
        publish carries a messageId (spec 16.2), plain otherwise."""
        retention = self.retention(publication.app_id, publication.channel)
        if retention is None and message_id is None:
            reached = await self._broker.publish(publication, count_everywhere=count_everywhere)
            return Published(reached, None)
        recording = Recording(retention, message_id, self._dedup_window_s)
        return await self._broker.publish_recorded(
            publication, recording, count_everywhere=count_everywhere
        )

    async def _send(self, conn: Connection, frame: Send) -> None:
        if "send" not in conn.principal.actions:
            self._reply_error(conn, ErrorCode.ACTION_NOT_PERMITTED, frame.request_id)
            return
        if not await self._usage.count_message(conn.app_id, self.quota(conn.app_id), self._clock()):
            self._reply_error(conn, ErrorCode.OVER_MESSAGE_QUOTA, frame.request_id)
            return
        reached = await self._broker.send_direct(
            Direct(
                app_id=conn.app_id,
                to=frame.to,
                sender=conn.peer_id,
                data=frame.data,
                sender_metadata=conn.principal.peer_metadata,
                origin_connection=conn.id,
            )
        )
        if reached == 0:
            self._reply_error(conn, ErrorCode.PEER_NOT_FOUND, frame.request_id)
            return
        self._ack(conn, frame.request_id)

    async def _subscribe(self, conn: Connection, frame: Subscribe) -> None:
        channel = frame.channel
        pattern: ChannelPattern | None = None
        refusal: ErrorCode | None
        if has_wildcard(channel):
            try:
                pattern = compile_pattern(channel)
            except PatternError:
                self._reply_error(conn, ErrorCode.INVALID_CHANNEL, frame.request_id)
                return
            if is_reserved_channel(channel):
                refusal = ErrorCode.CHANNEL_RESERVED
            elif "subscribe" not in conn.principal.actions:
                refusal = ErrorCode.ACTION_NOT_PERMITTED
            elif not conn.principal.scope.allows_pattern(pattern):
                refusal = ErrorCode.CHANNEL_NOT_AUTHORIZED
            else:
                refusal = None
        else:
            refusal = self._channel_refusal(conn, channel, "subscribe")
        if refusal is not None:
            self._reply_error(conn, refusal, frame.request_id, _detail(refusal, channel))
            return

        retention = None if pattern is not None else self.retention(conn.app_id, channel)
        wants_history = frame.since is not None or frame.rewind is not None
        existing = conn.subscriptions.get(channel)
        if existing is not None:
            # Idempotent: last subscribe wins, and the SDK expects a fresh snapshot.
            existing.include_sender_metadata = frame.include_sender_metadata
            replay: HistoryPage | None = None
            if retention is not None and wants_history:
                existing.held_messages = []
                try:
                    replay = await read_for(self._history, conn, channel, retention, frame)
                except BaseException:
                    release_held(conn, channel, existing, None)
                    raise
            self._ack(conn, frame.request_id, subscribe_fields(frame, retention, replay))
            try:
                if existing.pattern is not None:
                    self._queue_empty_snapshot(conn, channel)
                else:
                    await self._queue_snapshot(conn, channel, existing)
            finally:
                if replay is not None:
                    release_held(conn, channel, existing, replay)
            return
        max_channels = self._limits.max_channels
        if max_channels and len(conn.subscriptions) >= max_channels:
            self._reply_error(conn, ErrorCode.CHANNEL_LIMIT_EXCEEDED, frame.request_id)
            return
        if self._authorizer.covers_subscribe(conn.principal):
            verdict = await self._authorizer.subscribe(conn.principal, channel)
            if verdict.code is not None:
                self._reply_verdict(conn, verdict.code, frame.request_id)
                return
            if conn.closed:
                return

        sub = Subscription(frame.include_sender_metadata, pattern)
        conn.subscriptions[channel] = sub
        listed = False
        page: HistoryPage | None = None
        try:
            if pattern is not None:
                await self._add_pattern_member(conn, pattern, sub)
                self._ack(conn, frame.request_id, subscribe_fields(frame, None, None))
                self._queue_empty_snapshot(conn, channel)
                return
            sub.held_presence = []
            if retention is not None:
                sub.held_messages = []  # from the moment it is routed, until the replay
            await self._add_channel_member(conn, channel, sub)
            before = await self._presence.add(conn.app_id, channel, conn.presence_entry, conn.id)
            listed = True
            entry = (conn.presence_entry,)
            # A second connection of a present peer: left then joined, so WebRTC peers rebuild.
            await self._broker.publish_presence(
                PresenceDelta(conn.app_id, channel, conn.peer_id, entry, entry if before else ())
            )
            if retention is not None:
                # Read after the node watches the channel: what is not in the page arrives live.
                page = await read_for(self._history, conn, channel, retention, frame)
        except Exception:
            # Undo what was done (whatever failed: a broker fault or a bug) so the client can
            # simply retry the subscribe, instead of being left listed but never announced.
            conn.subscriptions.pop(channel, None)
            try:
                await self._remove_local_member(conn, channel, sub)
                if listed:
                    await self._presence.remove(conn.app_id, channel, conn.peer_id, conn.id)
            except BrokerUnavailable:
                pass
            raise
        self._ack(conn, frame.request_id, subscribe_fields(frame, retention, page))
        try:
            await self._queue_snapshot(conn, channel, sub)
        finally:
            if page is not None:
                release_held(conn, channel, sub, page)

    def _queue_empty_snapshot(self, conn: Connection, channel: str) -> None:
        if conn.sees_presence:
            conn.frames_out += 1
            conn.sink.push_after_pause(OutFrame(frames.presence(channel, [], [])))

    async def _queue_snapshot(self, conn: Connection, channel: str, sub: Subscription) -> None:
        if sub.held_presence is None:
            sub.held_presence = []
        try:
            members = await self._presence.members(conn.app_id, channel)
        except BaseException:
            held, sub.held_presence = sub.held_presence, None
            conn.frames_out += len(held)
            for frame in held:
                conn.sink.push(frame)
            raise
        held, sub.held_presence = sub.held_presence, None
        if not conn.sees_presence or conn.closed:
            return
        joined = [
            frames.presence_entry(m.peer_id, m.metadata)
            for m in members
            if m.peer_id != conn.peer_id
        ]
        conn.sink.push_after_pause(OutFrame(frames.presence(channel, joined, [])))
        conn.frames_out += 1 + len(held)
        for frame in held:
            conn.sink.push(frame)

    async def _unsubscribe(self, conn: Connection, frame: Unsubscribe) -> None:
        sub = conn.subscriptions.pop(frame.channel, None)
        if sub is not None:
            await self._drop_subscription(conn, frame.channel, sub)
        self._ack(conn, frame.request_id)

    async def _add_channel_member(self, conn: Connection, channel: str, sub: Subscription) -> None:
        if self._local.add_channel_member(conn, channel, sub):
            await self._broker.watch_channel(conn.app_id, channel)

    async def _add_pattern_member(
        self, conn: Connection, pattern: ChannelPattern, sub: Subscription
    ) -> None:
        if self._local.add_pattern_member(conn, pattern, sub):
            await self._broker.watch_pattern(conn.app_id, pattern.text)

    async def _remove_local_member(self, conn: Connection, channel: str, sub: Subscription) -> None:
        """Forget a subscription locally; unwatch in the broker when it was the last one."""
        if sub.pattern is None:
            if self._local.remove_channel_member(conn, channel):
                await self._broker.unwatch_channel(conn.app_id, channel)
        elif self._local.remove_pattern_member(conn, channel):
            await self._broker.unwatch_pattern(conn.app_id, channel)

    async def _drop_subscription(self, conn: Connection, channel: str, sub: Subscription) -> None:
        await self._remove_local_member(conn, channel, sub)
        if sub.pattern is not None:
            return
        remaining = await self._presence.remove(conn.app_id, channel, conn.peer_id, conn.id)
        if remaining == 0:
            await self._broker.publish_presence(
                PresenceDelta(conn.app_id, channel, conn.peer_id, (), (conn.presence_entry,))
            )

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
            return NodeAnswer(self.node_id, relayed=self._answer_relay(query.topic, query.payload))
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
        await self._usage.count_message(app_id, self.quota(app_id), self._clock())
        publication = Publication(app_id, channel, sender, data, sender_metadata, None)
        published = await self._hand_over(publication, message_id, count_everywhere=True)
        if not published.duplicate:
            self._activity.published(app_id, channel)
        return published

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
        """``handler`` answers this node's part of :meth:`relay` requests on ``topic``: it gets
        the payload and returns its answer, or None when the request is not for this node. It
        runs on the event loop and must not block."""
        self._relay_handlers[topic] = handler

    def _answer_relay(self, topic: str, payload: bytes) -> bytes | None:
        handler = self._relay_handlers.get(topic)
        if handler is None:
            return None
        try:
            return handler(payload)
        except Exception:  # a handler's bug must not cost the asker its other answers
            log.exception("relay handler for %r failed", topic)
            return None

    async def relay(self, app_id: str, topic: str, payload: bytes) -> list[bytes]:
        """Ask every node (this one first) through the broker, as the listings do; returns the
        answers that were not None, from the nodes that answered within the broker's wait."""
        query = NodeQuery(app_id, "relay", topic=topic, payload=payload)
        answers = await self._broker.query_nodes(query)
        return [answer.relayed for answer in answers if answer.relayed is not None]

    async def publish_event(self, app_id: str, channel: str, data: bytes, sender: str) -> int:
        """A publication the server makes on its own behalf (the conversation bus): recorded
        when the channel keeps history, not counted against the app's message quota, and not
        waiting for other nodes' delivery counts. Returns the local deliveries."""
        publication = Publication(app_id, channel, sender, data, None, None)
        published = await self._hand_over(publication, None)
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
