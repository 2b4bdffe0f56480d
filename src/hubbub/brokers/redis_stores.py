"""Cluster-wide presence and usage in Redis.

Presence of one channel is four keys under ``<prefix>:pr:<app>:<channel>``: ``order`` (a sorted
set giving join order), ``meta`` (peer -> peerMetadata), ``count`` (peer -> connections) and
``conns`` (connection -> peer). Lua scripts change them atomically, so two nodes adding
connections of the same peer agree on who was first. Every connection a node lists is also
indexed under ``<prefix>:node:<id>:presence``: when the node dies, a survivor walks that index
and removes exactly what the dead node had added (``reap_node``).

Usage keeps concurrent connections as one hash field per node (``<prefix>:u:<app>:conns``), so
a dead node's connections disappear with its field instead of leaking a counter forever.

Both stores remember what this node wrote, so after Redis comes back empty (a restart without
persistence) ``restore`` writes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from hubbub.brokers.redis_events import RedisEventRouter
from hubbub.brokers.redis_link import RedisLink, RedisShards
from hubbub.brokers.redis_sender import all_answers, discard_outcome
from hubbub.core.broker import BrokerUnavailable
from hubbub.core.events import LIFECYCLE_EVENTS, ChannelEvent, ChannelEventName
from hubbub.core.presence import PresenceDelta, PresenceEntry, PresenceStore
from hubbub.core.usage import AppQuota, UsageSnapshot, UsageStore

log = logging.getLogger(__name__)

# Lifecycle events (spec 16.3) are decided here, in the step that changes the membership, so
# each is decided exactly once however many nodes race: bit 1 of the answer's flags is
# channel_occupied / channel_vacated, bit 2 member_added / member_removed. When webhooks want
# them (the "wanted" argument), the channel's event counter (``hseq``) numbers them and the
# answer names the node that sends the channel's events (``sender``: the first node that
# decided one, see ``redis_events``); both records live an hour past the last event.
_NUMBER_EVENTS = """
local function number_events(flags, wanted, me)
  if flags == 0 or wanted ~= '1' then
    return {0, ''}
  end
  local count = (flags == 3) and 2 or 1
  local last = redis.call('INCRBY', KEYS[6], count)
  redis.call('PEXPIRE', KEYS[6], 3600000)
  local sender = redis.call('GET', KEYS[7])
  if not sender then
    sender = me
  end
  redis.call('SET', KEYS[7], sender, 'PX', 3600000)
  return {last, sender}
end
"""

# A sender that did not hear a hand-over is replaced by the first node that claims the
# channel; later claims (and claims against a sender already replaced) get the winner.
_CLAIM_SENDER = """
local sender = redis.call('GET', KEYS[1])
if (not sender) or sender == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', 3600000)
  return ARGV[2]
end
return sender
"""

_ADD = (
    _NUMBER_EVENTS
    + """
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 then
  return {tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '1') - 1, 0, 0, ''}
end
local before = redis.call('HINCRBY', KEYS[3], ARGV[1], 1) - 1
redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
local flags = 0
if before == 0 then
  if redis.call('ZCARD', KEYS[1]) == 0 then
    flags = 1
  end
  flags = flags + 2
  redis.call('ZADD', KEYS[1], 'NX', redis.call('INCR', KEYS[5]), ARGV[1])
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local numbered = number_events(flags, ARGV[5], ARGV[6])
return {before, flags, numbered[1], numbered[2]}
"""
)

# A connection removed twice (two reapers, a retried removal) decides nothing the second time.
_REMOVE = (
    _NUMBER_EVENTS
    + """
if redis.call('HDEL', KEYS[4], ARGV[2]) == 0 then
  return {tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0'), false, 0, 0, ''}
end
local remaining = redis.call('HINCRBY', KEYS[3], ARGV[1], -1)
if remaining > 0 then
  return {remaining, false, 0, 0, ''}
end
local metadata = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
local flags = 2
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[5])
  flags = 3
end
local numbered = number_events(flags, ARGV[3], ARGV[4])
return {0, metadata, flags, numbered[1], numbered[2]}
"""
)

_MEMBERS = """
local peers = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, peer in ipairs(peers) do
  out[#out + 1] = peer
  out[#out + 1] = redis.call('HGET', KEYS[2], peer) or ''
end
return out
"""

_OPEN = """
local total = 0
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  total = total + tonumber(value)
end
local cap = tonumber(ARGV[2])
if cap >= 0 and total >= cap then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if total + 1 > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], total + 1)
end
return 1
"""

_CLOSE = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 1
"""

_OCCUPANCY_FLAG = 1
_MEMBERSHIP_FLAG = 2

_SEPARATOR = "\x00"  # cannot occur in channel names or peer ids (both refuse control bytes)


def scoped(prefix: str, kind: str, app_id: str, name: str = "") -> str:
    """A key or channel name for one app; the length prefix keeps app ids unambiguous."""
    return f"{prefix}:{kind}:{len(app_id)}:{app_id}:{name}"


def slot_group(base: str) -> str:
    """Keys a script touches together must share a Redis Cluster slot: a hash tag does it.

    Every key is ``{<base>}:<suffix>``; even a ``}`` inside ``base`` ends the tag at the same
    place for all keys of one base, so they still land in one slot.
    """
    return "{" + base + "}"


class RedisPresenceStore(PresenceStore):
    def __init__(
        self,
        shards: RedisShards,
        prefix: str,
        node_id: str,
        events: RedisEventRouter | None = None,
    ) -> None:
        """``events``: where lifecycle events go (None: no webhook wants them)."""
        self._shards = shards
        self._events = events
        self._home = shards.first  # holds the per-node index
        self._prefix = prefix
        self._node_id = node_id
        self._add = [link.client.register_script(_ADD) for link in shards.links]
        self._remove = [link.client.register_script(_REMOVE) for link in shards.links]
        self._members = [link.client.register_script(_MEMBERS) for link in shards.links]
        self._claim = [link.client.register_script(_CLAIM_SENDER) for link in shards.links]
        # What this node has listed: (app, channel, connection) -> entry, to restore after a
        # Redis restart; removals Redis missed during an outage are retried then.
        self._local: dict[tuple[str, str, str], PresenceEntry] = {}
        self._unremoved: dict[tuple[str, str, str], str] = {}

    def node_index(self, node_id: str) -> str:
        return f"{self._prefix}:node:{node_id}:presence"

    def _keys(self, app_id: str, channel: str) -> tuple[int, list[str]]:
        """The shard holding a channel's presence, and its keys there."""
        base = slot_group(scoped(self._prefix, "pr", app_id, channel))
        suffixes = ("order", "meta", "count", "conns", "seq", "hseq", "sender")
        return self._shards.index_of(base), [f"{base}:{suffix}" for suffix in suffixes]

    @staticmethod
    def _index_member(app_id: str, channel: str, peer_id: str, connection_id: str) -> str:
        return _SEPARATOR.join((app_id, channel, peer_id, connection_id))

    def _numbered(self, app_id: str) -> str:
        """Whether the scripts should number this app's lifecycle events (webhooks want them)."""
        events = self._events
        wanted = events is not None and any(events.wants(app_id, n) for n in LIFECYCLE_EVENTS)
        return "1" if wanted else "0"

    def _announce(
        self,
        app_id: str,
        channel: str,
        peer_id: str,
        answer: tuple[Any, Any, Any],
        joined: bool,
    ) -> None:
        """Route what a script decided, in order: occupied before added, removed before
        vacated. ``answer`` is (flags, number of the last event or 0, sending node)."""
        raw_flags, raw_last, raw_sender = answer
        flags, last_seq = int(raw_flags), int(raw_last)
        events = self._events
        if not flags or events is None:
            return
        sender = raw_sender.decode() if isinstance(raw_sender, bytes) else str(raw_sender)
        names: list[ChannelEventName] = []
        if joined:
            if flags & _OCCUPANCY_FLAG:
                names.append(ChannelEventName.CHANNEL_OCCUPIED)
            if flags & _MEMBERSHIP_FLAG:
                names.append(ChannelEventName.MEMBER_ADDED)
        else:
            if flags & _MEMBERSHIP_FLAG:
                names.append(ChannelEventName.MEMBER_REMOVED)
            if flags & _OCCUPANCY_FLAG:
                names.append(ChannelEventName.CHANNEL_VACATED)
        first_seq = last_seq - len(names) + 1
        for i, name in enumerate(names):
            member = name in (ChannelEventName.MEMBER_ADDED, ChannelEventName.MEMBER_REMOVED)
            event = ChannelEvent(name, app_id, channel, user_id=peer_id if member else None)
            if last_seq:
                events.decided(dataclasses.replace(event, seq=first_seq + i), sender)
            else:
                events.emit(event)

    async def claim_sender(self, app_id: str, channel: str, unheard: str) -> str:
        """Take over sending a channel's events from ``unheard``; the sender after the claim."""
        shard, keys = self._keys(app_id, channel)
        link = self._shards.links[shard]
        sender = await link.run(self._claim[shard](keys=[keys[6]], args=[unheard, self._node_id]))
        return sender.decode() if isinstance(sender, bytes) else str(sender)

    async def _run_add(
        self, app_id: str, channel: str, entry: PresenceEntry, connection_id: str
    ) -> int:
        args = [
            entry.peer_id,
            connection_id,
            "0" if entry.metadata is None else "1",
            entry.metadata or b"",
            self._numbered(app_id),
            self._node_id,
        ]
        # Indexed first: a crash between the two leaves an index entry to nothing (harmless)
        # rather than a listing no reaper can find.
        member = self._index_member(app_id, channel, entry.peer_id, connection_id)
        await self._home.run(self._home.client.sadd(self.node_index(self._node_id), member))
        shard, keys = self._keys(app_id, channel)
        link = self._shards.links[shard]
        answer = await link.run(self._add[shard](keys=keys, args=args))
        self._announce(app_id, channel, entry.peer_id, (answer[1], answer[2], answer[3]), True)
        return int(answer[0])

    async def _run_remove(
        self, app_id: str, channel: str, peer_id: str, connection_id: str, node_id: str
    ) -> tuple[int, bytes | None]:
        args = [peer_id, connection_id, self._numbered(app_id), self._node_id]
        shard, keys = self._keys(app_id, channel)
        link = self._shards.links[shard]
        answer = await link.run(self._remove[shard](keys=keys, args=args))
        remaining, metadata = answer[0], answer[1]
        self._announce(app_id, channel, peer_id, (answer[2], answer[3], answer[4]), False)
        member = self._index_member(app_id, channel, peer_id, connection_id)
        await self._home.run(self._home.client.srem(self.node_index(node_id), member))
        return int(remaining), metadata or None

    async def add(self, app_id: str, channel: str, entry: PresenceEntry, connection_id: str) -> int:
        before = await self._run_add(app_id, channel, entry, connection_id)
        self._local[(app_id, channel, connection_id)] = entry
        return before

    async def remove(self, app_id: str, channel: str, peer_id: str, connection_id: str) -> int:
        key = (app_id, channel, connection_id)
        self._local.pop(key, None)
        try:
            remaining, _ = await self._run_remove(
                app_id, channel, peer_id, connection_id, self._node_id
            )
        except BrokerUnavailable:
            # Retried by restore(), which also announces the left to other nodes then;
            # locally the connection is gone, so the node emits its left right away.
            self._unremoved[key] = peer_id
            return 0
        return remaining

    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        shard, keys = self._keys(app_id, channel)
        link = self._shards.links[shard]
        flat: list[bytes] = await link.run(self._members[shard](keys=keys[:2]))
        return [
            PresenceEntry(flat[i].decode(), flat[i + 1] or None) for i in range(0, len(flat), 2)
        ]

    async def count(self, app_id: str, channel: str) -> int:
        shard, keys = self._keys(app_id, channel)
        link = self._shards.links[shard]
        found: int = await link.run(link.client.zcard(keys[0]))
        return found

    async def reap_node(self, node_id: str) -> list[PresenceDelta]:
        """Remove every connection a node listed (a dead node, or this one stopping); the
        ``left`` deltas that causes.

        One pass, whatever the number of connections: the removals are queued at once on
        each shard's ordered path (one pipelined write, not a round trip each), and the
        index is deleted whole at the end instead of entry by entry. A removal that fails
        leaves the index in place, so the next reaper finds what is left (removing a
        connection twice decides nothing the second time).
        """
        index = self.node_index(node_id)
        listed: list[bytes] = await self._home.run(self._home.client.smembers(index))
        removals: list[tuple[tuple[str, str, str], asyncio.Future[Any]]] = []
        for member in listed:
            parts = member.decode().split(_SEPARATOR)
            if len(parts) != 4:
                continue
            app_id, channel, peer_id, connection_id = parts
            args = [peer_id, connection_id, self._numbered(app_id), self._node_id]
            shard, keys = self._keys(app_id, channel)
            link = self._shards.links[shard]
            # EVAL, not EVALSHA: the script need not be cached (Redis compiles it once).
            removal = link.call_routed(keys[0], "EVAL", _REMOVE, len(keys), *keys, *args)
            removals.append(((app_id, channel, peer_id), removal))
        answers = await asyncio.gather(
            *(removal for _, removal in removals), return_exceptions=True
        )
        deltas: list[PresenceDelta] = []
        failed: BaseException | None = None  # the first failure, raised once all are read
        for ((app_id, channel, peer_id), _), answer in zip(removals, answers, strict=True):
            if isinstance(answer, BaseException):
                failed = failed or answer
                continue
            self._announce(app_id, channel, peer_id, (answer[2], answer[3], answer[4]), False)
            if int(answer[0]) == 0:
                left = (PresenceEntry(peer_id, answer[1] or None),)
                deltas.append(PresenceDelta(app_id, channel, peer_id, (), left))
        if failed is not None:
            raise BrokerUnavailable(str(failed)) from failed
        await self._home.run(self._home.client.delete(index))
        return deltas

    async def restore(self) -> tuple[list[PresenceDelta], list[PresenceDelta]]:
        """Write this node's presence again; the joined and left deltas others may have missed."""
        left: list[PresenceDelta] = []
        for (app_id, channel, connection_id), peer_id in list(self._unremoved.items()):
            remaining, metadata = await self._run_remove(
                app_id, channel, peer_id, connection_id, self._node_id
            )
            del self._unremoved[(app_id, channel, connection_id)]
            if remaining == 0:
                gone = (PresenceEntry(peer_id, metadata),)
                left.append(PresenceDelta(app_id, channel, peer_id, (), gone))
        joined: dict[tuple[str, str, str], PresenceDelta] = {}
        for (app_id, channel, connection_id), entry in list(self._local.items()):
            await self._run_add(app_id, channel, entry, connection_id)
            joined[(app_id, channel, entry.peer_id)] = PresenceDelta(
                app_id, channel, entry.peer_id, (entry,), ()
            )
        return list(joined.values()), left


class RedisUsageStore(UsageStore):
    """Counts connections per node (crash-safe) and messages per app and period."""

    def __init__(self, shards: RedisShards, prefix: str, node_id: str) -> None:
        self._shards = shards
        self._home = shards.first  # holds the set of apps
        self._prefix = prefix
        self._node_id = node_id
        self._open = [link.client.register_script(_OPEN) for link in shards.links]
        self._close = [link.client.register_script(_CLOSE) for link in shards.links]
        self._local_connections: dict[str, int] = {}
        self._apps_seen: set[str] = set()

    def _key(self, app_id: str, name: str) -> str:
        return f"{slot_group(scoped(self._prefix, 'u', app_id))}:{name}"

    def _shard(self, app_id: str) -> tuple[int, RedisLink]:
        """An app's counters all live on one shard."""
        shard = self._shards.index_of(slot_group(scoped(self._prefix, "u", app_id)))
        return shard, self._shards.links[shard]

    async def _note_app(self, app_id: str) -> None:
        """Remember the app cluster-wide, so a reaper can find its counters without SCAN."""
        if app_id not in self._apps_seen:
            await self._home.run(self._home.client.sadd(f"{self._prefix}:apps", app_id))
            self._apps_seen.add(app_id)

    def _cap(self, value: int | None) -> int:
        return -1 if value is None else value

    async def open_connection(self, app_id: str, quota: AppQuota) -> bool:
        keys = [self._key(app_id, "conns"), self._key(app_id, "peak")]
        args: list[str | int] = [self._node_id, self._cap(quota.max_concurrent_connections)]
        try:
            await self._note_app(app_id)
            shard, link = self._shard(app_id)
            admitted = await link.run(self._open[shard](keys=keys, args=args))
        except BrokerUnavailable:
            # Fail open: refusing every client during an outage would be worse than a cap
            # briefly exceeded; restore() publishes the true count when Redis is back.
            admitted = 1
        if admitted:
            self._local_connections[app_id] = self._local_connections.get(app_id, 0) + 1
        return bool(admitted)

    async def close_connection(self, app_id: str) -> None:
        self._local_connections[app_id] = max(0, self._local_connections.get(app_id, 0) - 1)
        keys = [self._key(app_id, "conns")]
        # During an outage restore() writes the absolute count later.
        with contextlib.suppress(BrokerUnavailable):
            shard, link = self._shard(app_id)
            await link.run(self._close[shard](keys=keys, args=[self._node_id]))

    async def count_message(self, app_id: str, quota: AppQuota, now: float) -> bool:
        start, end = quota.period_bounds(now)
        key = self._key(app_id, f"msgs:{start}")
        _, link = self._shard(app_id)
        used = link.call("INCR", key)
        # Keep the counter a while past its period so a late snapshot still reads it.
        keep_s = max(1, int(end + quota.period_s - now))
        expiry = link.call("EXPIRE", key, keep_s, "NX")
        cap = quota.max_messages_per_period
        if cap is None:
            # Nothing to decide, so nothing to wait for: the count rides in the same write
            # as the publish that follows instead of costing it a round trip first.
            # An outage is reported by the publish or send this count belongs to.
            used.add_done_callback(discard_outcome)
            expiry.add_done_callback(discard_outcome)
            return True
        try:
            count, _ = await all_answers([used, expiry])
        except BrokerUnavailable:
            return True  # the publish itself reports the outage; local delivery goes on
        return int(count) <= cap

    async def snapshot(self, app_id: str, quota: AppQuota, now: float) -> UsageSnapshot:
        start, end = quota.period_bounds(now)
        _, link = self._shard(app_id)
        client = link.client

        async def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hvals(self._key(app_id, "conns"))
            pipe.get(self._key(app_id, "peak"))
            pipe.get(self._key(app_id, f"msgs:{start}"))
            results: list[Any] = await pipe.execute()
            return results

        counts, peak, used = await link.run(read())
        return UsageSnapshot(
            concurrent_now=sum(int(c) for c in counts),
            peak_concurrent=int(peak or 0),
            messages_used=int(used or 0),
            period_start=start,
            period_end=end,
        )

    async def forget_node(self, node_id: str) -> None:
        """A dead node's connections stop counting."""
        home = self._home
        apps: set[bytes] = await home.run(home.client.smembers(f"{self._prefix}:apps"))
        for raw_app in apps:
            app_id = raw_app.decode()
            _, link = self._shard(app_id)
            await link.run(link.client.hdel(self._key(app_id, "conns"), node_id))

    async def restore(self) -> None:
        apps, self._apps_seen = self._apps_seen | set(self._local_connections), set()
        for app_id in apps:
            await self._note_app(app_id)
            key = self._key(app_id, "conns")
            count = self._local_connections.get(app_id, 0)
            _, link = self._shard(app_id)
            await link.run(link.client.hset(key, self._node_id, count))
