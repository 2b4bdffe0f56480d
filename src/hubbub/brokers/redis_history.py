"""Channel history and message-id de-duplication in Redis, one atomic step per publish.

A channel's keys share one Redis Cluster slot with its pub/sub channel (all are
``{<prefix>:c:<app>:<channel>}...``, see ``slot_group``), and live on the app's shard with
client-side sharding, so one Lua script can do everything a recorded publish needs:

1. with a ``messageId``: ``GET`` its key ``...:m:<id>``; if it is there, answer "duplicate" with
   the first one's offset (the key's value) and stop;
2. with history: read the channel's epoch from ``...:hm`` (making a new one, and dropping any
   orphaned stream, when it is missing: the history was lost), ``HINCRBY`` the offset, ``XADD``
   the record to the stream ``...:h`` with the explicit id ``<offset>-0`` trimmed to
   ``history_size`` (``MAXLEN``), drop records older than ``history_ttl_s`` from its head, and
   let the stream expire with its newest record (``PEXPIRE``);
3. ``SET`` the message id's key (``PX`` = the dedup window) to the offset;
4. ``PUBLISH`` (``SPUBLISH`` on a cluster) the envelope with the offset and epoch appended.

Because Redis runs scripts one at a time, offsets are unique and consecutive across nodes, and
because step 4 is inside the script every node receives a channel's publications in offset
order. The script travels on the node's ordered command path (``EVAL``), so a sender's publishes
stay in order with its other events. The epoch metadata outlives the stream (``META_TTL_S``),
so a client that recovers after the records expired learns it missed them, in the same epoch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from hubbub.brokers.memory_history import new_epoch
from hubbub.brokers.redis_link import RedisShards
from hubbub.brokers.redis_stores import scoped, slot_group
from hubbub.core.history import (
    HistoryPage,
    HistoryRecord,
    HistoryStats,
    HistoryStore,
    Recording,
    Retention,
    StreamPosition,
)

META_TTL_S: Final = 30 * 24 * 3600

_APPEND: Final = """
local size = tonumber(ARGV[3])
local dedup = KEYS[4]
if dedup then
  local first = redis.call('GET', dedup)
  if first then
    local epoch = ''
    if size > 0 then epoch = redis.call('HGET', KEYS[3], 'e') or '' end
    return {1, tonumber(first), epoch, 0}
  end
end
local offset = 0
local epoch = ''
local envelope = ARGV[2]
if size > 0 then
  epoch = redis.call('HGET', KEYS[3], 'e')
  if not epoch then
    epoch = ARGV[6]
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[3], 'e', epoch, 'o', 0)
  end
  offset = redis.call('HINCRBY', KEYS[3], 'o', 1)
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
  if ARGV[12] == '1' then
    redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-0',
      't', ARGV[5], 'f', ARGV[9], 'd', ARGV[10], 'm', ARGV[11])
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-0',
      't', ARGV[5], 'f', ARGV[9], 'd', ARGV[10])
  end
  local cutoff = tonumber(ARGV[5]) - tonumber(ARGV[4])
  while true do
    local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    if #head == 0 or tonumber(head[1][2][2]) >= cutoff then break end
    redis.call('XDEL', KEYS[2], head[1][1])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  local text = tostring(offset)
  envelope = envelope .. struct.pack('>I4', #text) .. text .. struct.pack('>I4', #epoch) .. epoch
end
if dedup then
  redis.call('SET', dedup, offset, 'PX', ARGV[8])
end
local reached = redis.call(ARGV[1], KEYS[1], envelope)
return {0, offset, epoch, reached}
"""

_READ: Final = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local top = tonumber(redis.call('HGET', KEYS[2], 'o'))
local limit = tonumber(ARGV[3])
local records
if ARGV[1] == 'after' then
  if limit < 0 then
    records = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '+')
  else
    records = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '+', 'COUNT', limit)
  end
elseif limit > 0 then
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', limit)
  records = {}
  for i = #newest, 1, -1 do records[#records + 1] = newest[i] end
else
  records = {}
end
local cutoff = tonumber(ARGV[4]) - tonumber(ARGV[5])
local out = {epoch, top}
for _, record in ipairs(records) do
  local fields = {}
  local list = record[2]
  for i = 1, #list, 2 do fields[list[i]] = list[i + 1] end
  if tonumber(fields['t']) >= cutoff then
    out[#out + 1] = string.match(record[1], '^(%d+)')
    out[#out + 1] = fields['t']
    out[#out + 1] = fields['f']
    out[#out + 1] = fields['d']
    if fields['m'] then
      out[#out + 1] = '1'
      out[#out + 1] = fields['m']
    else
      out[#out + 1] = '0'
      out[#out + 1] = ''
    end
  end
end
return out
"""


class RedisHistoryStore(HistoryStore):
    def __init__(
        self,
        shards: RedisShards,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        epoch_factory: Callable[[], str] = new_epoch,
    ) -> None:
        self._shards = shards
        self._prefix = prefix
        self._clock = clock
        self._new_epoch = epoch_factory
        self._read = [link.client.register_script(_READ) for link in shards.links]
        self.stats = HistoryStats()

    def channel_name(self, app_id: str, channel: str) -> str:
        """The channel's pub/sub name; its history keys share its slot and shard."""
        return slot_group(scoped(self._prefix, "c", app_id, channel))

    def append(
        self,
        publication_head: bytes,
        app_id: str,
        channel: str,
        sender: str,
        data: bytes,
        sender_metadata: bytes | None,
        recording: Recording,
        publish_command: str,
    ) -> asyncio.Future[Any]:
        """Queue the append script on the ordered path; its answer is
        ``[duplicate (0/1), offset, epoch, listeners]``."""
        name = self.channel_name(app_id, channel)
        keys = [name, f"{name}:h", f"{name}:hm"]
        if recording.message_id is not None:
            keys.append(f"{name}:m:{recording.message_id}")
        retention = recording.retention
        size, ttl_s = (retention.size, retention.ttl_s) if retention else (0, 0.0)
        args: list[bytes | str | int] = [
            publish_command,
            publication_head,
            size,
            max(1, int(ttl_s * 1000)),
            int(self._clock() * 1000),
            self._new_epoch(),
            max(int(ttl_s * 1000), META_TTL_S * 1000),
            max(1, int(recording.dedup_window_s * 1000)),
            sender,
            data,
            sender_metadata or b"",
            "0" if sender_metadata is None else "1",
        ]
        link = self._shards.for_key(name)
        return link.call_routed(name, "EVAL", _APPEND, len(keys), *keys, *args)

    async def read(
        self,
        app_id: str,
        channel: str,
        retention: Retention,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        name = self.channel_name(app_id, channel)
        shard = self._shards.index_of(name)
        link = self._shards.links[shard]
        ttl_ms = max(1, int(retention.ttl_s * 1000))
        args = [
            "after" if after is not None else "latest",
            after if after is not None else 0,
            -1 if limit is None else limit,
            int(self._clock() * 1000),
            ttl_ms,
            self._new_epoch(),
            max(ttl_ms, META_TTL_S * 1000),
        ]
        flat: list[Any] = await link.run(
            self._read[shard](keys=[f"{name}:h", f"{name}:hm"], args=args)
        )
        position = StreamPosition(int(flat[1]), _text(flat[0]))
        records = tuple(
            HistoryRecord(
                int(flat[i]),
                int(flat[i + 1]),
                _text(flat[i + 2]),
                bytes(flat[i + 3]),
                bytes(flat[i + 5]) if flat[i + 4] == b"1" else None,
            )
            for i in range(2, len(flat), 6)
        )
        if after is None:
            complete = True
        elif after >= position.offset:
            complete = after == position.offset
        else:
            complete = bool(records) and records[0].offset == after + 1
        return HistoryPage(position, records, complete)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
