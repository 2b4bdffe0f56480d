"""What every lean ``/v1`` connection shares: settings, admission, the write flusher, the
keepalive and lingering-close wheels, and the driving of the node's coroutines.

One :class:`RealtimeShared` per server. A connection (``realtime_socket.RealtimeSocket``)
holds a reference to it and nothing else that is not its own state, so an idle connection
costs its transport, one slotted object and its place in the keepalive wheel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from hubbub.auth.client_ip import TrustedProxies
from hubbub.auth.connect import ConnectProxy
from hubbub.auth.keys import KeyRing
from hubbub.core.node import Node
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.core.wheel import Cancellable, TimerWheel


class Flushable(Protocol):
    """What the flusher needs of a connection's write side (``Flushable``)."""

    def flush(self) -> None: ...


class Watched(Protocol):
    """What the keepalive and lingering wheels need of a connection (``RealtimeSocket``);
    narrow so this module does not import the socket that imports it."""

    def __hash__(self) -> int: ...

    def keepalive_check(self) -> None: ...

    def linger_over(self) -> None: ...


log = logging.getLogger(__name__)

Result = TypeVar("Result")

# After a close this side starts, how long the peer gets to answer it (and to read it).
LINGER_S = 2.0
# A slow consumer's close frame must be written within this long, or its socket is aborted
# (spec decision 18).
SLOW_CONSUMER_LINGER_S = 1.0
# After frames were coalesced, how long every frame keeps being queued (burst mode).
BURST_HOLD_S = 0.05


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    max_message_bytes: int  # the frame cap including the envelope slack; 0: none
    slow_consumer_bytes: int
    snapshot_delay_s: float
    keepalive_interval_s: float
    keepalive_timeout_s: float
    # Drive the node's coroutines inline (no task) until they suspend. Only for backends whose
    # handling never needs a current task (asyncio.timeout does): the memory broker.
    inline: bool


class _LoopScheduler:
    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self._loop.call_later(delay, callback)


class WriteFlusher:
    """Coalescing of writes within one loop iteration, for every connection at once.

    A frame for a connection that wrote nothing yet in this iteration goes straight to its
    transport (a paced delivery: one ``write``, nothing scheduled per connection). A second
    frame in the same iteration is queued and written, with everything else queued for that
    connection, once at the end of the iteration. Once an iteration has coalesced, every
    frame is queued from the first (a burst: one write per connection per iteration) until
    BURST_HOLD_S pass without coalescing.
    """

    __slots__ = (
        "_burst_timer",
        "_dirty",
        "_loop",
        "_scheduled",
        "_seen_coalescing",
        "coalesced",
        "epoch",
        "queueing",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self.epoch = 0
        self.queueing = False
        self.coalesced = False
        self._seen_coalescing = False
        self._burst_timer: asyncio.TimerHandle | None = None

    def wrote(self) -> None:
        """A connection wrote directly in this iteration (the iteration must end with a tick)."""
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def mark(self, socket: Flushable) -> None:
        self._dirty.append(socket)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self.epoch += 1
        if self.coalesced:
            self.coalesced = False
            self.queueing = self._seen_coalescing = True
            if self._burst_timer is None:
                self._burst_timer = self._loop.call_later(BURST_HOLD_S, self._burst_check)
        dirty, self._dirty = self._dirty, []
        for socket in dirty:
            socket.flush()

    def _burst_check(self) -> None:
        if self._seen_coalescing:
            self._seen_coalescing = False
            self._burst_timer = self._loop.call_later(BURST_HOLD_S, self._burst_check)
        else:
            self._burst_timer = None
            self.queueing = False


@types.coroutine
def _continue(coro: Coroutine[Any, Any, Result], yielded: Any) -> Generator[Any, Any, Result]:
    """Go on running a coroutine that suspended outside any task, inside one."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # the task was cancelled: pass it on
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


async def _finish(coro: Coroutine[Any, Any, Result], yielded: Any) -> Result:
    return await _continue(coro, yielded)


class RealtimeShared:
    __slots__ = (
        "_quiet",
        "closing",
        "flusher",
        "ip_limiter",
        "keepalive",
        "keys",
        "lingering",
        "loop",
        "node",
        "proxy",
        "settings",
        "tasks",
        "trusted",
    )

    def __init__(
        self,
        node: Node,
        keys: KeyRing,
        settings: RealtimeSettings,
        trusted: TrustedProxies,
        ip_limiter: KeyedRateLimiter,
        proxy: ConnectProxy | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.node = node
        self.keys = keys
        self.settings = settings
        self.trusted = trusted
        self.ip_limiter = ip_limiter
        self.proxy = proxy
        self.loop = loop
        self.flusher = WriteFlusher(loop)
        scheduler = _LoopScheduler(loop)
        # Each connection is looked at once per keepalive interval (8 slots per interval).
        self.keepalive: TimerWheel[Watched] = TimerWheel(
            scheduler, loop.time, settings.keepalive_interval_s / 8, _keepalive_check
        )
        self.lingering: TimerWheel[Watched] = TimerWheel(scheduler, loop.time, 0.25, _linger_over)
        # Connections between their close's start and the end of their TCP connection.
        self.closing: set[Watched] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        # Set while a graceful shutdown waits for the closes and tasks above to finish.
        self._quiet: asyncio.Event | None = None

    def now(self) -> float:
        return time.time()

    def drive(
        self,
        coro: Coroutine[Any, Any, Result],
        done: Callable[[Result], None],
        failed: Callable[[], None],
        *,
        inline: bool = True,
    ) -> asyncio.Task[Result] | None:
        """Run ``coro``; ``done`` gets its result (``failed`` is called instead if it raised).
        Inline while it does not suspend (unless ``inline`` is false or the backend needs a
        task); once it does, a task takes over (returned, so the caller can hold its reading
        meanwhile)."""
        if not (inline and self.settings.inline):
            return self._task(_finish_new(coro), done, failed)
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            done(stop.value)
            return None
        except Exception:
            log.exception("unexpected error on a realtime connection")
            failed()
            return None
        return self._task(_finish(coro, yielded), done, failed)

    def _task(
        self,
        coro: Coroutine[Any, Any, Result],
        done: Callable[[Result], None],
        failed: Callable[[], None],
    ) -> asyncio.Task[Result]:
        task = self.loop.create_task(coro)
        self.tasks.add(task)

        def finished(task: asyncio.Task[Result]) -> None:
            self.tasks.discard(task)
            self.settled()
            if task.cancelled():
                failed()
                return
            error = task.exception()
            if error is not None:
                log.error("unexpected error on a realtime connection", exc_info=error)
                failed()
                return
            done(task.result())

        task.add_done_callback(finished)
        return task

    def close_ended(self, socket: Watched) -> None:
        """``socket``'s TCP connection ended (its close, if one had started, is over)."""
        self.closing.discard(socket)
        self.settled()

    def settled(self) -> None:
        if self._quiet is not None and not self.closing and not self.tasks:
            self._quiet.set()

    async def wait_closed(self, timeout_s: float) -> None:
        """Until every closing connection has ended and every frame's task has finished
        (graceful shutdown), at most ``timeout_s``."""
        if not self.closing and not self.tasks:
            return
        self._quiet = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._quiet.wait()


async def _finish_new(coro: Coroutine[Any, Any, Result]) -> Result:
    return await coro


def _keepalive_check(socket: Watched) -> None:
    socket.keepalive_check()


def _linger_over(socket: Watched) -> None:
    socket.linger_over()
