"""RedisBroker: many Hubbub nodes behave as one server through Redis pub/sub.

Routing. Each event is delivered to the calling node's own connections synchronously (which
keeps local delivery working while Redis is down) and published once, as raw bytes, to one
Redis channel; every other node that subscribed decodes it and fans it out to its own
connections with the node's encode-once path. Nodes skip their own envelopes.

* A channel's publications and presence deltas go to ``{<prefix>:c:<app>:<channel>}`` (a hash
  tag: the channel's history keys share its Redis Cluster slot); a node subscribes to it while
  it has local subscribers of the channel.
* History and message ids (``publish_recorded``): one script appends, claims the id and
  publishes (``redis_history``), so every node gets a channel's recorded publications in offset
  order. For the same reason the publishing node delivers its own recorded publications when
  its copy comes back from Redis, not before (its local subscribers then see the same order).
* Wildcards: Hubbub's glob rules are not Redis's, so a node with any pattern subscription in an
  app PSUBSCRIBEs to all of the app's channels (``<prefix>:c:<app>:*``) and lets the node's
  own matcher choose. While that pattern is confirmed, the plain ``message`` copies of the
  app's channels are dropped, so nothing is delivered twice; the switch happens at the
  confirmation, in stream order, so nothing is lost either.
* Directs and kicks go to ``<prefix>:p:<app>:<peer>``, subscribed while the node holds a
  connection of that peer. PUBLISH answers how many nodes listened, which is how ``send``
  knows a peer is on no node (``peer_not_found``).
* Listing questions (``query_nodes``) go to ``<prefix>:ask``, which every node subscribes to;
  they are answered like counted events (see "counting on every node" below).

Per-sender FIFO holds because all of a node's commands go through one ordered pipeline and all
of its subscriptions share one connection (see ``redis_link``). With several shards (a list of
URLs) every app lives on one server, so it still holds. On a Redis Cluster channels are spread
over slots (the point of sharded pub/sub); a sender's events on different slots are then ordered
only because the node awaits each hand-over before the next.

Sharding: ``RedisShards`` picks the server of each app by a hash of its id. On a Redis
Cluster (``cluster = true``) channels use sharded pub/sub, which has no patterns, so each
publication is also published to its app's wildcard channel ``<prefix>:w:<app>``, which
nodes with pattern subscriptions in that app subscribe to. When slots move, the link follows
(``redis_link``: subscriptions; ``redis_sender``: MOVED answers).

Liveness (``redis_liveness``): each node heartbeats, and one node at a time reaps the
presence and connection counts of nodes that stopped. Counted events and listing questions
(``redis_tally``) are answered by every node that got a copy.

Webhooks. With a :class:`~hubbub.brokers.redis_events.RedisEventRouter`, lifecycle events
are handed to the node that sends their channel's webhooks over its reply channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from typing import Any

from hubbub.brokers import redis_codec as codec
from hubbub.brokers.redis_events import RedisEventRouter
from hubbub.brokers.redis_history import RedisHistoryStore
from hubbub.brokers.redis_link import RedisShards
from hubbub.brokers.redis_liveness import NodeLiveness
from hubbub.brokers.redis_sender import all_answers, discard_outcome
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore, scoped, slot_group
from hubbub.brokers.redis_subscriber import LinkCallbacks
from hubbub.brokers.redis_tally import Tallies, Tally
from hubbub.core.broker import (
    Broker,
    BrokerHandler,
    BrokerUnavailable,
    Direct,
    NodeAnswer,
    NodeQuery,
    Publication,
)
from hubbub.core.events import ChannelEvent
from hubbub.core.history import Published, Recording, StreamPosition
from hubbub.core.presence import PresenceDelta

log = logging.getLogger(__name__)

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


class RedisBroker(Broker):
    # stop() reaps this node's presence index and usage field, as a survivor reaps a dead node.
    releases_node_on_stop = True

    def __init__(
        self,
        shards: RedisShards,
        presence: RedisPresenceStore,
        usage: RedisUsageStore,
        *,
        node_id: str,
        prefix: str,
        presence_ttl_s: float,
        events: RedisEventRouter | None = None,
        history: RedisHistoryStore | None = None,
    ) -> None:
        self._shards = shards
        self._events = events
        if events is not None:
            events.attach(self._forward_event, presence.claim_sender)
        self.history = history if history is not None else RedisHistoryStore(shards, prefix)
        self._presence = presence
        self._usage = usage
        self._node_id = node_id
        self._prefix = prefix
        self._handler: BrokerHandler | None = None
        self._channel_head = slot_group(f"{prefix}:c:")[:-1].encode()
        self._pattern_refs: dict[str, int] = {}
        # (shard, app pattern or wildcard channel) that Redis has confirmed.
        self._covered: set[tuple[int, bytes]] = set()
        self._sharded = shards.first.sharded
        self._publish_command = "SPUBLISH" if self._sharded else "PUBLISH"
        self._wildcard_head = f"{prefix}:w:".encode()
        self._tallies = Tallies(node_id)
        self.liveness = NodeLiveness(
            shards.first,
            presence,
            usage,
            self._publish_lefts,
            node_id=node_id,
            prefix=prefix,
            presence_ttl_s=presence_ttl_s,
        )

    # --- names ----------------------------------------------------------------------------

    def _channel(self, app_id: str, channel: str) -> bytes:
        return self.history.channel_name(app_id, channel).encode()

    def _peer(self, app_id: str, peer_id: str) -> bytes:
        return scoped(self._prefix, "p", app_id, peer_id).encode()

    def _app_interest(self, app_id: str) -> bytes:
        """What a node listens to for the app's wildcards: a Redis pattern over all of the
        app's channels, or (sharded pub/sub has no patterns) the app's wildcard channel, to
        which every publication of the app is also published."""
        if self._sharded:
            return scoped(self._prefix, "w", app_id).encode()
        stem = self._channel(app_id, "")[:-1]  # without the tag's closing brace
        return _GLOB_SPECIAL.sub(rb"\\\1", stem) + b"*"

    def _askers(self) -> bytes:
        """Where listing questions go: every node listens."""
        return f"{self._prefix}:ask".encode()

    # --- lifecycle ------------------------------------------------------------------------

    def _target(self) -> BrokerHandler:
        if self._handler is None:
            raise RuntimeError("broker not started")
        return self._handler

    def _callbacks(self, shard: int) -> LinkCallbacks:
        return LinkCallbacks(
            on_message=functools.partial(self._on_message, shard),
            on_confirmed=functools.partial(self._on_confirmed, shard),
            on_lost=functools.partial(self._on_lost, shard),
            on_recovered=self._recover,
        )

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        await self._shards.start(self._callbacks)
        with contextlib.suppress(BrokerUnavailable):
            # Kept wanted through an outage: the reconnect subscribes it.
            await self._watch(self._replies_of(self._node_id))
        with contextlib.suppress(BrokerUnavailable):
            await self._watch(self._askers())
        await self.liveness.start()

    async def stop(self) -> None:
        await self.liveness.stop()
        await self._shards.stop()
        self._handler = None

    # --- interest -------------------------------------------------------------------------

    async def watch_channel(self, app_id: str, channel: str) -> None:
        await self._watch(self._channel(app_id, channel))

    async def unwatch_channel(self, app_id: str, channel: str) -> None:
        await self._unwatch(self._channel(app_id, channel))

    async def watch_pattern(self, app_id: str, pattern: str) -> None:
        refs = self._pattern_refs.get(app_id, 0)
        self._pattern_refs[app_id] = refs + 1
        if refs:
            return
        # On failure the node calls unwatch_pattern, which undoes this.
        name = self._app_interest(app_id)
        if self._sharded:
            await self._watch(name)
        else:
            # Every shard holds some of the app's channels.
            for link in self._shards.links:
                await link.main_subscriber.want(name, pattern=True)

    async def unwatch_pattern(self, app_id: str, pattern: str) -> None:
        refs = self._pattern_refs.get(app_id, 0) - 1
        if refs > 0:
            self._pattern_refs[app_id] = refs
            return
        self._pattern_refs.pop(app_id, None)
        name = self._app_interest(app_id)
        if self._sharded:
            await self._unwatch(name)
            return
        for link in self._shards.links:
            await link.main_subscriber.unwant(name, pattern=True)

    async def register_peer(self, app_id: str, peer_id: str) -> None:
        # During an outage the registration is deferred, not failed: the peer stays wanted
        # and the reconnect subscribes it. The outage itself was logged once already.
        with contextlib.suppress(BrokerUnavailable):
            await self._watch(self._peer(app_id, peer_id))

    async def unregister_peer(self, app_id: str, peer_id: str) -> None:
        await self._unwatch(self._peer(app_id, peer_id))

    async def _watch(self, name: bytes) -> None:
        # Kept wanted when Redis is away: the reconnect subscribes it. A node that gives up
        # on the interest (a failed subscribe) calls the matching unwatch.
        await self._shards.for_key(name).subscriber_for(name).want(name)

    async def _unwatch(self, name: bytes) -> None:
        try:
            subscriber = self._shards.for_key(name).subscriber_for(name)
        except BrokerUnavailable:
            return  # no cluster node owns it now: nothing is subscribed to undo
        await subscriber.unwant(name)

    # --- sending --------------------------------------------------------------------------

    # Each send below queues its Redis command *before* the local fan-out: the command's
    # write then precedes this node's socket writes, instead of waiting behind all of them
    # and delaying every other node by this node's whole fan-out.

    async def publish(self, publication: Publication, *, count_everywhere: bool = False) -> int:
        tally = self._tallies.open() if count_everywhere else None
        token = None if tally is None else tally.token
        payload = codec.encode_publication(self._node_id, publication, token)
        name = self._channel(publication.app_id, publication.channel)
        sends = [self._shards.for_key(name).call(self._publish_command, name, payload)]
        if self._sharded:
            wildcard = self._app_interest(publication.app_id)
            sends.append(self._shards.for_key(wildcard).call("SPUBLISH", wildcard, payload))
        # One loop turn lets the sender write the command now, so the other nodes start
        # their fan-out while this one is still queueing frames for its own subscribers.
        await asyncio.sleep(0)
        reached = self._target().deliver_publication(publication)
        if tally is None:
            await all_answers(sends)
            return reached
        return reached + await self._tallies.close(tally, sends)

    async def publish_recorded(
        self, publication: Publication, recording: Recording, *, count_everywhere: bool = False
    ) -> Published:
        tally = self._tallies.open() if count_everywhere else None
        token = None if tally is None else tally.token
        recorded = recording.retention is not None
        head = codec.encode_publication(self._node_id, publication, token, recorded=recorded)
        answer = self.history.append(
            head,
            publication.app_id,
            publication.channel,
            publication.sender,
            publication.data,
            publication.sender_metadata,
            recording,
            self._publish_command,
        )
        try:
            duplicate, offset, epoch, listeners = await answer
        except BaseException:
            if tally is not None:
                self._tallies.discard(tally)
            raise
        position = StreamPosition(int(offset), epoch.decode()) if recorded else None
        if duplicate:
            self.history.stats.duplicates += 1
            if tally is not None:
                self._tallies.discard(tally)
            return Published(0, position, duplicate=True)
        if recorded:
            self.history.stats.appended += 1
        copies: list[asyncio.Future[Any]] = [_settled(int(listeners))]
        if self._sharded:
            wildcard = self._app_interest(publication.app_id)
            envelope = head if position is None else codec.with_position(head, position)
            copies.append(self._shards.for_key(wildcard).call("SPUBLISH", wildcard, envelope))
        reached = 0
        if position is None:
            reached = self._target().deliver_publication(publication)
        # else: this node's subscribers get it with its Redis copy, in offset order.
        if tally is None:
            await all_answers(copies)
            return Published(reached, position)
        return Published(reached + await self._tallies.close(tally, copies), position)

    async def publish_presence(self, delta: PresenceDelta) -> None:
        sent = self._presence_remote(delta)
        self._target().deliver_presence(delta)
        if delta.joined:
            await sent
            return
        # A left that cannot reach Redis is not lost: the presence store kept the removal
        # Redis missed, and recovery removes it and announces the left to every node.
        with contextlib.suppress(BrokerUnavailable):
            await sent

    async def _publish_lefts(self, deltas: list[PresenceDelta]) -> None:
        """Many ``left`` deltas (a reaped node's): all queued in one pipelined write, in
        order, then delivered here, instead of a round trip each."""
        sent = [self._presence_remote(delta) for delta in deltas]
        handler = self._target()
        for delta in deltas:
            handler.deliver_presence(delta)
        # As in publish_presence, a left that cannot reach Redis fails nobody.
        with contextlib.suppress(BrokerUnavailable):
            await all_answers(sent)

    def _presence_remote(self, delta: PresenceDelta) -> asyncio.Future[Any]:
        name = self._channel(delta.app_id, delta.channel)
        payload = codec.encode_presence(self._node_id, delta)
        return self._shards.for_key(name).call(self._publish_command, name, payload)

    async def send_direct(self, direct: Direct) -> int:
        name = self._peer(direct.app_id, direct.to)
        sent = self._shards.for_key(name).call(
            self._publish_command, name, codec.encode_direct(self._node_id, direct)
        )
        reached = self._target().deliver_direct(direct)
        listeners: int = await sent
        # Other nodes holding the peer: each has at least one connection of it.
        return reached + self._remote_nodes(name, listeners)

    async def disconnect_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        tally = self._tallies.open()
        name = self._peer(app_id, peer_id)
        payload = codec.encode_disconnect(self._node_id, app_id, peer_id, code, reason, tally.token)
        sent = self._shards.for_key(name).call(self._publish_command, name, payload)
        closed = self._target().disconnect_local_peer(app_id, peer_id, code, reason)
        return closed + await self._tallies.close(tally, [sent])

    async def query_nodes(self, query: NodeQuery) -> list[NodeAnswer]:
        tally = self._tallies.open()
        name = self._askers()
        payload = codec.encode_question(self._node_id, query, tally.token)
        sent = self._shards.for_key(name).call(self._publish_command, name, payload)
        local = self._target().answer_query(query)
        await self._tallies.close(tally, [sent])
        return [local, *tally.answers]

    # --- counting on every node (see redis_tally) ---------------------------------------------

    def _answer_tally(self, origin: str, token: bytes, count: int) -> None:
        self._reply(origin, codec.encode_count(self._node_id, token, count))

    def _reply(self, origin: str, payload: bytes) -> None:
        name = self._replies_of(origin)
        answered = self._shards.for_key(name).call(self._publish_command, name, payload)
        answered.add_done_callback(discard_outcome)  # a lost answer shows as a short count

    def _replies_of(self, node_id: str) -> bytes:
        return f"{self._prefix}:n:{len(node_id)}:{node_id}".encode()

    def _remote_nodes(self, name: bytes, listeners: int) -> int:
        local = self._shards.for_key(name).subscriber_for(name).wants(name)
        return max(0, listeners - (1 if local else 0))

    # --- receiving ------------------------------------------------------------------------

    def _on_lost(self, shard: int, names: set[bytes]) -> None:
        self._covered.difference_update((shard, name) for name in names)

    def _on_confirmed(self, shard: int, kind: bytes, name: bytes) -> None:
        if kind == b"psubscribe" or (
            kind == b"ssubscribe" and name.startswith(self._wildcard_head)
        ):
            self._covered.add((shard, name))
        elif kind in (b"punsubscribe", b"sunsubscribe"):
            self._covered.discard((shard, name))

    def _on_message(self, shard: int, kind: bytes, name: bytes, payload: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            event, origin = codec.origin_node(payload)
            if event == codec.COUNT:
                token, count = codec.decode_count(payload)
                tally: Tally | None = self._tallies.get(token)
                if tally is not None:
                    tally.add(count)
                return
            if event == codec.ANSWER:
                token, answer = codec.decode_answer(payload)
                tally = self._tallies.get(token)
                if tally is not None:
                    tally.add(0, answer)
                return
            if origin == self._node_id and event != codec.RECORDED:
                if self._tallies:  # our own copy of a counted event: nothing more reached
                    own_tally = self._tallies.get(codec.tally_of(payload))
                    if own_tally is not None:
                        own_tally.add(0)
                return
            if event == codec.RECORDED and origin == self._node_id:
                # Our own recorded publication: delivered here, in offset order, and counted
                # into our own tally rather than answered on the reply channel.
                publication, wanted = codec.decode_publication(payload)
                reached = 0
                if not self._is_duplicate(shard, kind, name, publication.app_id):
                    reached = handler.deliver_publication(publication)
                own_tally = self._tallies.get(wanted)
                if own_tally is not None:
                    own_tally.add(reached)
            elif event in (codec.PUBLICATION, codec.RECORDED):
                publication, wanted = codec.decode_publication(payload)
                reached = 0
                if not self._is_duplicate(shard, kind, name, publication.app_id):
                    reached = handler.deliver_publication(publication)
                if wanted is not None:
                    self._answer_tally(origin, wanted, reached)
            elif event == codec.PRESENCE:
                delta = codec.decode_presence(payload)
                # Sharded: presence goes to the channel only, never to the wildcard channel.
                if not self._sharded and self._is_duplicate(shard, kind, name, delta.app_id):
                    return
                handler.deliver_presence(delta)
            elif event == codec.DIRECT:
                handler.deliver_direct(codec.decode_direct(payload))
            elif event == codec.DISCONNECT:
                target, asked = codec.decode_disconnect(payload)
                self._answer_tally(origin, asked, handler.disconnect_local_peer(*target))
            elif event == codec.QUESTION:
                query, asked = codec.decode_question(payload)
                answer = handler.answer_query(query)
                self._reply(origin, codec.encode_answer(self._node_id, asked, answer))
            elif event == codec.CHANNEL_EVENT and self._events is not None:
                self._events.receive(codec.decode_channel_event(payload))
        except (codec.EnvelopeError, UnicodeDecodeError):
            log.warning("ignored a malformed envelope on redis channel %r", name[:200])
        except Exception:
            # A delivery bug must not take the subscriber connection down with it.
            log.exception("unexpected error delivering an event from redis")

    def _is_duplicate(self, shard: int, kind: bytes, name: bytes, app_id: str) -> bool:
        """A channel event arrives twice while the app's pattern is confirmed: keep one.

        A pattern covers the channels of its own shard; a wildcard channel (Redis Cluster)
        carries copies of all the app's channels, wherever it lives."""
        if kind == b"pmessage" or not self._covered or not name.startswith(self._channel_head):
            return False
        interest = self._app_interest(app_id)
        where = self._shards.index_of(interest) if self._sharded else shard
        return (where, interest) in self._covered

    # --- webhooks ---------------------------------------------------------------------------

    def _forward_event(self, node_id: str, event: ChannelEvent) -> asyncio.Future[Any]:
        name = self._replies_of(node_id)
        payload = codec.encode_channel_event(self._node_id, event)
        return self._shards.for_key(name).call(self._publish_command, name, payload)

    async def _recover(self) -> None:
        """Redis is back (maybe empty): announce this node and what it holds again."""
        self.liveness.hold_off_reaping()
        await self.liveness.heartbeat()
        await self._usage.restore()
        joined, left = await self._presence.restore()
        for delta in left:
            await self.publish_presence(delta)
        # Others may have reaped us meanwhile; a duplicate joined is harmless (spec 5.6).
        for delta in joined:
            await self._presence_remote(delta)


def _settled(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
