"""One pub/sub connection of a node's link to Redis: it owns what it listens to.

Callers say :meth:`RedisSubscriber.want` and :meth:`RedisSubscriber.unwant`; the subscriber keeps
the set and subscribes it again after every reconnect (patterns first, so the plain copies of a
pattern's channels are not dropped before the pattern is confirmed). What it hears comes out
through the :class:`LinkCallbacks` given to its constructor. See :mod:`hubbub.brokers.redis_link`
for why a node has exactly one subscriber connection per Redis server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from hubbub.brokers.redis_sender import FAILURES as _REDIS_FAILURES
from hubbub.brokers.redis_sender import OutageListener, stop_task
from hubbub.core.broker import BrokerUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 2.0
CONFIRM_TIMEOUT_S: Final = 5.0
RECONNECT_MAX_S: Final = 1.0
_SUBSCRIBE_CHUNK: Final = 500

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


class RedisSubscriber:
    """One pub/sub connection; owns what it should listen to and restores it."""

    def __init__(
        self,
        link: OutageListener,
        connect: Callable[[], Connection],
        callbacks: LinkCallbacks,
        *,
        sharded: bool,
        on_moved: Callable[[RedisSubscriber, set[bytes]], None] | None = None,
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

    async def take_over(self, name: bytes, holder: RedisSubscriber) -> None:
        """Listen to ``name`` here instead of at ``holder`` (its slot moved to this primary)."""
        holder._channels.discard(name)
        with contextlib.suppress(BrokerUnavailable):
            await self.want(name)
