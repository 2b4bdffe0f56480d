"""One node's link to Redis: an ordered command path, one subscriber connection, outages.

Ordering is why there is exactly one of each. Commands a node issues go out in the order they
were issued, pipelined on one connection (:mod:`~hubbub.brokers.redis_sender`), so Redis runs
a sender's presence delta, publishes and directs in the order the node handed them over; and
every subscription of the node lives on one connection, so Redis pushes them to the node in
that same order. Together that is per-sender FIFO across nodes.

Vendor errors stop here: callers see :class:`~hubbub.core.broker.BrokerUnavailable`. An outage
is logged once as a warning when it starts and once as info when it ends; the link's
:attr:`LinkCallbacks.on_recovered` then restores what Redis may have lost.

Each subscriber owns what it listens to: callers say :meth:`_Subscriber.want` and
:meth:`_Subscriber.unwant`, and the subscriber keeps the set it restores after an outage. What
the link tells its user (messages, confirmations, lost subscriptions, recovery) comes through
the :class:`LinkCallbacks` given to :meth:`RedisLink.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from hubbub.brokers.redis_sender import COMMAND_TIMEOUT_S, OrderedSender, stop_task
from hubbub.brokers.redis_sender import FAILURES as _REDIS_FAILURES
from hubbub.core.broker import BrokerUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 2.0
CONFIRM_TIMEOUT_S: Final = 5.0
RECONNECT_MAX_S: Final = 1.0
_SUBSCRIBE_CHUNK: Final = 500
_REHOME_RETRY_S: Final = 0.1

_CONFIRMATIONS = frozenset(
    (b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"ssubscribe", b"sunsubscribe")
)

# (kind, channel or pattern, payload) for b"message"; pattern messages carry the pattern.
MessageHandler = Callable[[bytes, bytes, bytes], None]


def _ignore(kind: bytes, name: bytes, payload: bytes) -> None:
    return None


def _ignore_confirmation(kind: bytes, name: bytes) -> None:
    return None


def _forget(names: set[bytes]) -> None:
    return None


async def _nothing_to_restore() -> None:
    return None


@dataclass(frozen=True, slots=True)
class LinkCallbacks:
    """What a link tells its user; the defaults ignore it (a link used only for commands)."""

    # Every message of a subscription: (kind, channel or pattern, payload).
    on_message: MessageHandler = _ignore
    # Redis confirmed a (P|S)(UN)SUBSCRIBE: (confirmation kind, channel or pattern).
    on_confirmed: Callable[[bytes, bytes], None] = _ignore_confirmation
    # A dropped connection held these subscriptions (until they are confirmed again).
    on_lost: Callable[[set[bytes]], None] = _forget
    # Redis is reachable again after an outage (and may have lost everything).
    on_recovered: Callable[[], Awaitable[None]] = _nothing_to_restore


class _Subscriber:
    """One pub/sub connection; owns what it should listen to and restores it."""

    def __init__(
        self,
        link: RedisLink,
        connect: Callable[[], Connection],
        callbacks: LinkCallbacks,
        *,
        sharded: bool,
        on_moved: Callable[[_Subscriber, set[bytes]], None] | None = None,
    ) -> None:
        self._link = link
        self._make_connection = connect
        self._callbacks = callbacks
        self._subscribe = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsubscribe = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self._channels: set[bytes] = set()
        self._patterns: set[bytes] = set()
        self._connection: Connection | None = None
        self._connected = asyncio.Event()
        self._ever_connected = False
        self._waiters: dict[tuple[bytes, bytes], list[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        # Redis Cluster: told which wanted channels this primary no longer serves.
        self._on_moved = on_moved

    async def want(self, name: bytes, *, pattern: bool = False) -> None:
        """Listen to channel ``name`` (a Redis glob with ``pattern``) until :meth:`unwant`.

        Returns once Redis confirmed it. Raises :class:`BrokerUnavailable` when it cannot be
        confirmed now; the name stays wanted, so the next reconnect subscribes it (a caller
        that gives up on it calls :meth:`unwant`)."""
        (self._patterns if pattern else self._channels).add(name)
        await self._change("PSUBSCRIBE" if pattern else self._subscribe, name)

    async def unwant(self, name: bytes, *, pattern: bool = False) -> None:
        """Stop listening to ``name``. Never fails: when the connection is down there is
        nothing to undo, since a reconnect restores only what is still wanted."""
        (self._patterns if pattern else self._channels).discard(name)
        with contextlib.suppress(BrokerUnavailable):
            await self._change("PUNSUBSCRIBE" if pattern else self._unsubscribe, name)

    def wants(self, name: bytes) -> bool:
        """Whether channel ``name`` is wanted here (confirmed or still to be)."""
        return name in self._channels

    def wanted_channels(self) -> set[bytes]:
        return set(self._channels)

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._reader is not None:
            await stop_task(self._reader)
        if self._connection is not None:
            await self._connection.disconnect()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        return self._connected.is_set()

    async def _change(self, command: str, name: bytes) -> None:
        """Send (P|S)(UN)SUBSCRIBE and wait until Redis confirms it on this connection."""
        confirm_kind = command.lower().encode()
        if not self._connected.is_set() and not self._ever_connected:
            await self.wait_connected(CONNECT_TIMEOUT_S)  # a subscriber still starting up
        connection = self._connection
        if connection is None or not self._connected.is_set():
            raise BrokerUnavailable("redis subscriber connection is down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((confirm_kind, name), []).append(future)
        try:
            await connection.send_command(command, name)
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await future
        except (*_REDIS_FAILURES, TimeoutError) as exc:
            raise BrokerUnavailable(f"redis did not confirm {command}") from exc
        finally:
            waiting = self._waiters.get((confirm_kind, name))
            if waiting is not None and future in waiting:
                waiting.remove(future)

    async def _connect(self) -> Connection:
        connection = self._make_connection()
        # A subscriber waits for pushes indefinitely; an outage shows as a closed socket here
        # and as failed heartbeats on the command path.
        connection.socket_timeout = None
        await connection.connect()  # type: ignore[no-untyped-call]
        # Restore everything first, so nothing published after the restore is missed.
        # Patterns first: while one is being confirmed, plain copies are not yet dropped.
        restore = (("PSUBSCRIBE", self._patterns), (self._subscribe, self._channels))
        for command, names in restore:
            listed = list(names)
            for start in range(0, len(listed), _SUBSCRIBE_CHUNK):
                await connection.send_command(command, *listed[start : start + _SUBSCRIBE_CHUNK])
        return connection

    async def _run(self) -> None:
        delay_s = 0.05
        while True:
            try:
                self._connection = await self._connect()
                self._connected.set()
                self._ever_connected = True
                self._link.note_success()
                delay_s = 0.05
                while True:
                    try:
                        reply = await self._connection.read_response(
                            disable_decoding=True, timeout=None, push_request=True
                        )
                    except (redis_errors.MovedError, redis_errors.AskError) as moved:
                        # A (re)subscribe reached a primary that no longer owns the slot.
                        self._moved_away(moved.slot_id)
                        continue
                    self._dispatch(reply)
            except asyncio.CancelledError:
                raise
            except _REDIS_FAILURES as exc:
                self._link.note_failure(exc)
            except Exception:
                log.exception("unexpected error on the redis subscriber connection")
            self._connected.clear()
            self._callbacks.on_lost(self._channels | self._patterns)
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.disconnect()
                self._connection = None
            for waiting in self._waiters.values():
                for future in waiting:
                    if not future.done():
                        future.set_exception(BrokerUnavailable("redis connection lost"))
            await asyncio.sleep(delay_s)
            delay_s = min(RECONNECT_MAX_S, delay_s * 2)

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind in (b"message", b"smessage"):
            self._callbacks.on_message(kind, reply[1], reply[2])
        elif kind == b"pmessage":
            self._callbacks.on_message(kind, reply[1], reply[3])
        elif kind in _CONFIRMATIONS:
            self._callbacks.on_confirmed(kind, reply[1])
            waiting = self._waiters.pop((kind, reply[1]), ())
            for future in waiting:
                if not future.done():
                    future.set_result(None)
            unasked = kind == b"sunsubscribe" and not waiting and reply[1] in self._channels
            if unasked and self._on_moved is not None:
                # Redis Cluster dropped the subscription: its slot moved to another primary.
                self._on_moved(self, {reply[1]})

    def _moved_away(self, slot: int) -> None:
        names = {name for name in self._channels if key_slot(name) == slot}
        for name in names:
            for future in self._waiters.pop((b"ssubscribe", name), ()):
                if not future.done():
                    future.set_exception(BrokerUnavailable("the slot moved to another primary"))
        if names and self._on_moved is not None:
            self._on_moved(self, names)

    async def take_over(self, name: bytes, holder: _Subscriber) -> None:
        """Listen to ``name`` here instead of at ``holder`` (its slot moved to this primary)."""
        holder._channels.discard(name)
        with contextlib.suppress(BrokerUnavailable):
            await self.want(name)


class RedisLink:
    """The Redis client a node's broker and stores share."""

    def __init__(self, url: str, *, cluster: bool = False) -> None:
        self.url = url
        # What the logs show: the URL without its password.
        self.shown_url = re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)
        self.sharded = cluster
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": COMMAND_TIMEOUT_S,
            # One immediate retry replaces a pooled connection Redis closed while it was away.
            "retry": Retry(NoBackoff(), 1),
        }
        self.client: Redis | RedisCluster = (
            RedisCluster.from_url(url, **options) if cluster else Redis.from_url(url, **options)
        )
        # The ordered command path: one sender per Redis server (each cluster primary).
        self._senders: dict[str, OrderedSender] = {}
        # One subscriber per Redis server: the only one, or each cluster primary (sharded
        # channels must be subscribed on the primary that owns their slot).
        self._subscribers: dict[str, _Subscriber] = {}
        self.in_outage = False
        self._callbacks = LinkCallbacks()  # the user's, from start()
        self._recovering: asyncio.Task[None] | None = None
        self._rehoming: asyncio.Task[None] | None = None
        self._dropped: dict[bytes, _Subscriber] = {}  # sharded channels to subscribe again

    def _add_subscriber(self, name: str, connect: Callable[[], Connection]) -> _Subscriber:
        subscriber = _Subscriber(
            self,
            connect,
            self._callbacks,
            sharded=self.sharded,
            on_moved=self._slots_moved if self.sharded else None,
        )
        self._subscribers[name] = subscriber
        subscriber.start()
        return subscriber

    def subscriber_for(self, channel: bytes) -> _Subscriber:
        if not self.sharded:
            return self._subscribers["main"]
        assert isinstance(self.client, RedisCluster)
        node = self.client.get_node_from_key(channel.decode())
        if node is None:
            raise BrokerUnavailable("no redis cluster node owns this channel")
        return self.subscriber_for_node(node.name, node.host, int(node.port))

    def subscriber_for_node(self, name: str, host: str, port: int) -> _Subscriber:
        found = self._subscribers.get(name)
        if found is None:
            found = self._add_subscriber(name, self._node_connection(host, port))
        return found

    @property
    def main_subscriber(self) -> _Subscriber:
        """The subscriber for patterns (standalone Redis only)."""
        return self._subscribers["main"]

    async def start(self, callbacks: LinkCallbacks | None = None) -> None:
        """Connect; ``callbacks`` hear of the subscriptions and of recoveries from now on."""
        if callbacks is not None:
            self._callbacks = callbacks
        if self.sharded:
            assert isinstance(self.client, RedisCluster)
            try:
                await self.client.initialize()
            except _REDIS_FAILURES as exc:
                self.note_failure(exc)
                return
            for node in self.client.get_primaries():
                self.subscriber_for_node(node.name, node.host, int(node.port))
            for subscriber in self._subscribers.values():
                await subscriber.wait_connected(CONNECT_TIMEOUT_S)
            return
        assert isinstance(self.client, Redis)
        pool = self.client.connection_pool
        subscriber = self._add_subscriber("main", pool.make_connection)
        if not await subscriber.wait_connected(CONNECT_TIMEOUT_S):
            log.warning("redis at %s is not reachable yet; the node starts anyway", self.shown_url)

    def all_subscribed(self) -> set[bytes]:
        return set().union(*(s.wanted_channels() for s in self._subscribers.values()))

    # --- Redis Cluster slot migration ------------------------------------------------------

    def _slots_moved(self, subscriber: _Subscriber, names: set[bytes]) -> None:
        for name in names:
            self._dropped[name] = subscriber
        if self._rehoming is None or self._rehoming.done():
            self._rehoming = asyncio.get_running_loop().create_task(self._rehome())

    async def _rehome(self) -> None:
        """Learn the slot owners again and subscribe each dropped channel at its owner.

        The primaries learn of a move one by one, so the owner read here may still be the old
        one; its answer (MOVED) drops the channel again, and the next round, a moment later,
        asks again."""
        assert isinstance(self.client, RedisCluster)
        log.info("redis cluster slots moved: resubscribing sharded channels at their owners")
        while self._dropped:
            dropped, self._dropped = self._dropped, {}
            try:
                await self.client.nodes_manager.initialize()
            except _REDIS_FAILURES as exc:
                self.note_failure(exc)
                return
            for name, holder in dropped.items():
                if not holder.wants(name):
                    continue  # no longer wanted
                try:
                    owner = self.subscriber_for(name)
                except BrokerUnavailable:
                    continue
                await owner.take_over(name, holder)
            if self._dropped:
                await asyncio.sleep(_REHOME_RETRY_S)

    async def stop(self) -> None:
        await stop_task(self._rehoming)
        for subscriber in self._subscribers.values():
            await subscriber.stop()
        for sender in self._senders.values():
            await sender.stop()
        await stop_task(self._recovering)
        await self.client.aclose()

    def note_failure(self, exc: BaseException) -> None:
        if not self.in_outage:
            self.in_outage = True
            log.warning(
                "redis at %s is unreachable (%s): publishes and sends answer backend_error "
                "until it is back",
                self.shown_url,
                exc,
                extra={"event": "broker_unavailable", "broker": self.shown_url},
            )

    def note_success(self) -> None:
        if self.in_outage:
            self.in_outage = False
            log.info(
                "redis at %s is reachable again: restoring subscriptions and presence",
                self.shown_url,
                extra={"event": "broker_recovered", "broker": self.shown_url},
            )
            self._recovering = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        # A new outage ends this; the next recovery runs it again.
        with contextlib.suppress(BrokerUnavailable):
            await self._callbacks.on_recovered()

    def call(self, command: str, name: str | bytes, *args: Any) -> asyncio.Future[Any]:
        """Queue one command about channel or key ``name`` on the ordered, pipelined path."""
        return self._sender_for(name).call(command, name, *args)

    def call_routed(self, route: str | bytes, *command: Any) -> asyncio.Future[Any]:
        """Queue a command (a script, say) whose keys all live where ``route`` does."""
        return self._sender_for(route).call(*command)

    def _sender_for(self, name: str | bytes) -> OrderedSender:
        if not self.sharded:
            found = self._senders.get("main")
            if found is None:
                assert isinstance(self.client, Redis)
                pool = self.client.connection_pool
                found = self._senders["main"] = OrderedSender(pool.make_connection, self)
            return found
        assert isinstance(self.client, RedisCluster)
        node = self.client.get_node_from_key(name if isinstance(name, str) else name.decode())
        if node is None:
            raise BrokerUnavailable("no redis cluster node owns this channel")
        found = self._senders.get(node.name)
        if found is None:
            found = self._senders[node.name] = OrderedSender(
                self._node_connection(node.host, int(node.port)),
                self,
                redirect=self._follow_redirect,
            )
        return found

    async def _follow_redirect(self, command: tuple[Any, ...]) -> Any:
        # redis-py's cluster client follows MOVED/ASK and updates its slot table, so the
        # next command for that slot is routed to its new owner.
        return await self.client.execute_command(*command)

    def _node_connection(self, host: str, port: int) -> Callable[[], Connection]:
        def connect() -> Connection:
            return Connection(
                host=host,
                port=port,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )

        return connect

    async def run(self, operation: Awaitable[Any]) -> Any:
        """Await a command, script or pipeline outside the ordered path, errors translated."""
        try:
            result = await operation
        except _REDIS_FAILURES as exc:
            self.note_failure(exc)
            raise BrokerUnavailable(str(exc)) from exc
        except redis_errors.RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        self.note_success()
        return result


def shard_index(name: str | bytes, shards: int) -> int:
    """Which of ``shards`` servers holds a key or channel: stable across nodes and restarts.

    Everything of one app lives on one server: a hash of the app's scope in the name
    (``[{]<prefix>:<kind>:<length>:<app>:...``). Spreading an app's channels over servers would
    break per-sender FIFO: one node reads each server on its own connection, and events on two
    connections can be read in either order.
    """
    if shards == 1:
        return 0
    data = name.encode() if isinstance(name, str) else name
    return zlib.crc32(_app_scope(data)) % shards


def _app_scope(name: bytes) -> bytes:
    parts = name.lstrip(b"{").split(b":", 3)
    if len(parts) < 4 or not parts[2].isdigit():
        return name
    return parts[3][: int(parts[2])]


class RedisShards:
    """Client-side sharding over independent Redis servers (or one server: the usual case).

    Each app's keys and channels live on one shard, chosen by a stable hash of the app id, so
    every node agrees where they are (see :func:`shard_index`). The first shard also holds what
    must be in one place: node liveness, the reaper lock and the per-node presence index.
    """

    def __init__(self, links: list[RedisLink]) -> None:
        if not links:
            raise ValueError("at least one Redis link is needed")
        self.links = links
        self.first = links[0]

    def index_of(self, name: str | bytes) -> int:
        return shard_index(name, len(self.links))

    def for_key(self, name: str | bytes) -> RedisLink:
        return self.links[self.index_of(name)]

    async def start(self, callbacks: Callable[[int], LinkCallbacks] | None = None) -> None:
        """Connect every shard; ``callbacks(index)`` gives each shard's link its callbacks."""
        for index, link in enumerate(self.links):
            await link.start(callbacks(index) if callbacks is not None else None)

    async def stop(self) -> None:
        for link in self.links:
            await link.stop()
