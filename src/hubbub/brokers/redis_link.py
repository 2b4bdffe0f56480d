"""One node's link to Redis: an ordered command path, one subscriber connection, outages.

Ordering is why there is exactly one of each. Commands a node issues go out in the order they
were issued, pipelined on one connection (:mod:`~hubbub.brokers.redis_sender`), so Redis runs
a sender's presence delta, publishes and directs in the order the node handed them over; and
every subscription of the node lives on one connection, so Redis pushes them to the node in
that same order. Together that is per-sender FIFO across nodes.

Vendor errors stop here: callers see :class:`~hubbub.core.broker.BrokerUnavailable`. An outage
is logged once as a warning when it starts and once as info when it ends; the link's
:attr:`LinkCallbacks.on_recovered` then restores what Redis may have lost.

Each subscriber (:mod:`~hubbub.brokers.redis_subscriber`) owns what it listens to: callers say
``want()`` and ``unwant()``, and the subscriber keeps the set it restores after an outage. What
the link tells its user (messages, confirmations, lost subscriptions, recovery) comes through
the :class:`~hubbub.brokers.redis_subscriber.LinkCallbacks` given to :meth:`RedisLink.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from hubbub.brokers.redis_sender import COMMAND_TIMEOUT_S, OrderedSender, stop_task
from hubbub.brokers.redis_sender import FAILURES as _REDIS_FAILURES
from hubbub.brokers.redis_subscriber import CONNECT_TIMEOUT_S, LinkCallbacks, RedisSubscriber
from hubbub.core.broker import BrokerUnavailable

log = logging.getLogger(__name__)

# Pooled connections per Redis server for commands outside the ordered path.
DEFAULT_POOL_SIZE: Final = 64
# How long a command may queue for a pooled connection (a 5,000-client storm queues ~15,000).
POOL_WAIT_S: Final = 30.0
_REHOME_RETRY_S: Final = 0.1


class RedisLink:
    """The Redis client a node's broker and stores share."""

    def __init__(
        self, url: str, *, cluster: bool = False, max_connections: int = DEFAULT_POOL_SIZE
    ) -> None:
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
        self.client: Redis | RedisCluster
        if cluster:
            self.client = RedisCluster.from_url(url, max_connections=max_connections, **options)
        else:
            # A burst of connects or closes (a reconnect storm, a node shutting down) queues
            # for a pooled connection instead of being refused: the default pool raises once
            # its connections are all in use, which would read as Redis being unreachable.
            # The wait is long because thousands queue at once while Redis answers quickly;
            # an unanswered command still fails after COMMAND_TIMEOUT_S (socket_timeout).
            pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=POOL_WAIT_S, **options
            )
            self.client = Redis(connection_pool=pool)
        # The ordered command path: one sender per Redis server (each cluster primary).
        self._senders: dict[str, OrderedSender] = {}
        # One subscriber per Redis server: the only one, or each cluster primary (sharded
        # channels must be subscribed on the primary that owns their slot).
        self._subscribers: dict[str, RedisSubscriber] = {}
        self.in_outage = False
        self._callbacks = LinkCallbacks()  # the user's, from start()
        self._recovering: asyncio.Task[None] | None = None
        self._rehoming: asyncio.Task[None] | None = None
        self._dropped: dict[bytes, RedisSubscriber] = {}  # sharded channels to subscribe again

    def _add_subscriber(self, name: str, connect: Callable[[], Connection]) -> RedisSubscriber:
        subscriber = RedisSubscriber(
            self,
            connect,
            self._callbacks,
            sharded=self.sharded,
            on_moved=self._slots_moved if self.sharded else None,
        )
        self._subscribers[name] = subscriber
        subscriber.start()
        return subscriber

    def subscriber_for(self, channel: bytes) -> RedisSubscriber:
        if not self.sharded:
            return self._subscribers["main"]
        assert isinstance(self.client, RedisCluster)
        node = self.client.get_node_from_key(channel.decode())
        if node is None:
            raise BrokerUnavailable("no redis cluster node owns this channel")
        return self.subscriber_for_node(node.name, node.host, int(node.port))

    def subscriber_for_node(self, name: str, host: str, port: int) -> RedisSubscriber:
        found = self._subscribers.get(name)
        if found is None:
            found = self._add_subscriber(name, self._node_connection(host, port))
        return found

    @property
    def main_subscriber(self) -> RedisSubscriber:
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

    def _slots_moved(self, subscriber: RedisSubscriber, names: set[bytes]) -> None:
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
        if isinstance(exc, redis_errors.TimeoutError) and not self.sharded:
            # A command to this one server went unanswered (a heartbeat, say): the ordered
            # path need not find out with a publish of its own, 5 s later.
            main = self._senders.get("main")
            if main is not None:
                main.suspect_hung(exc)
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
