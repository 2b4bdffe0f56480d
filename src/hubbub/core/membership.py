"""Subscriptions: joining and leaving channels, presence, and the history replay at the seam.

The ordering rules of spec section 5 (see :mod:`hubbub.core.node`) are kept here: a newcomer's
``joined`` is handed to the broker before its ``ack`` and snapshot; the snapshot goes out after
the ack as a separate write, with presence deltas that arrive before it held behind it; on a
channel with history the live messages are held from the moment the subscription is routed
until the replay is queued, so the seam has neither a gap nor a duplicate.

History (spec 16.1): on a channel with history, a subscribe is added to the routes with its
live messages *held*, then the history is read (``since``: everything after the client's
offset; ``rewind``: the newest K; neither: just the position), then the ack (with
``recovered``/``offset``/``epoch``), the snapshot, the replay and the held live messages
newer than what was read are queued, in that order. Live copies at or below the read offset
are dropped from then on, so the seam has neither a gap nor a duplicate.
"""

from __future__ import annotations

from hubbub.core.authorizer import Authorizer
from hubbub.core.broker import Broker, BrokerUnavailable
from hubbub.core.connection import Connection, Subscription
from hubbub.core.history import HistoryPage, HistoryStore, RetentionRules
from hubbub.core.outbound import OutFrame
from hubbub.core.presence import PresenceDelta, PresenceStore
from hubbub.core.principal import channel_refusal
from hubbub.core.recovery import read_for, release_held, subscribe_fields
from hubbub.core.replies import Replies, refusal_detail
from hubbub.core.routes import LocalRoutes
from hubbub.protocol import frames
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import Subscribe, Unsubscribe
from hubbub.protocol.patterns import ChannelPattern, PatternError, compile_pattern, has_wildcard


class Membership:
    """One node's subscriptions: its local routes, the broker's interest, cluster presence."""

    def __init__(
        self,
        *,
        broker: Broker,
        presence: PresenceStore,
        local: LocalRoutes,
        authorizer: Authorizer,
        history: HistoryStore | None,
        retention: RetentionRules,
        replies: Replies,
        max_channels: int,
    ) -> None:
        self._broker = broker
        self._presence = presence
        self._local = local
        self._authorizer = authorizer
        self._history = history
        self._retention = retention
        self._replies = replies
        self._max_channels = max_channels

    async def subscribe(self, conn: Connection, frame: Subscribe) -> None:
        channel = frame.channel
        pattern: ChannelPattern | None = None
        if has_wildcard(channel):
            try:
                pattern = compile_pattern(channel)
            except PatternError:
                self._replies.error(conn, ErrorCode.INVALID_CHANNEL, frame.request_id)
                return
        principal = conn.principal
        refusal = channel_refusal(
            channel, "subscribe", principal.actions, principal.scope, pattern=pattern
        )
        if refusal is not None:
            self._replies.error(conn, refusal, frame.request_id, refusal_detail(refusal, channel))
            return

        retention = (
            None if pattern is not None else self._retention.for_channel(conn.app_id, channel)
        )
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
            self._replies.ack(conn, frame.request_id, subscribe_fields(frame, retention, replay))
            try:
                if existing.pattern is not None:
                    self._queue_empty_snapshot(conn, channel)
                else:
                    await self._queue_snapshot(conn, channel, existing)
            finally:
                if replay is not None:
                    release_held(conn, channel, existing, replay)
            return
        max_channels = self._max_channels
        if max_channels and len(conn.subscriptions) >= max_channels:
            self._replies.error(conn, ErrorCode.CHANNEL_LIMIT_EXCEEDED, frame.request_id)
            return
        if self._authorizer.covers_subscribe(conn.principal):
            verdict = await self._authorizer.subscribe(conn.principal, channel)
            if verdict.code is not None:
                self._replies.verdict(conn, verdict.code, frame.request_id)
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
                self._replies.ack(conn, frame.request_id, subscribe_fields(frame, None, None))
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
        self._replies.ack(conn, frame.request_id, subscribe_fields(frame, retention, page))
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

    async def unsubscribe(self, conn: Connection, frame: Unsubscribe) -> None:
        sub = conn.subscriptions.pop(frame.channel, None)
        if sub is not None:
            await self.drop(conn, frame.channel, sub)
        self._replies.ack(conn, frame.request_id)

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

    async def drop(self, conn: Connection, channel: str, sub: Subscription) -> None:
        await self._remove_local_member(conn, channel, sub)
        if sub.pattern is not None:
            return
        remaining = await self._presence.remove(conn.app_id, channel, conn.peer_id, conn.id)
        if remaining == 0:
            await self._broker.publish_presence(
                PresenceDelta(conn.app_id, channel, conn.peer_id, (), (conn.presence_entry,))
            )
