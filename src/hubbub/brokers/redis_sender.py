"""The ordered command path to one Redis server: written at once, replies matched in order.

A node's publishes, directs and presence deltas go through here. Commands issued in one loop
iteration are packed into one write by a task created on the first of them; because that task
was scheduled before the caller's own fan-out, the write reaches Redis *before* the node's
writes to its local sockets (which would otherwise hold every other node back by this node's
whole fan-out, several milliseconds for a few hundred subscribers). Writes never wait for
replies: one connection carries any number of batches, Redis executes them in the order they
were written, and one reader settles their futures in that same order.

Failures fail commands with :class:`~hubbub.core.broker.BrokerUnavailable` (clients see
``backend_error``, which means "not confirmed", never "not done"):

* A command that finds no connection, or whose connection breaks, fails, as does every
  command written on that connection and not yet answered; the next command reconnects (a
  Redis that refuses connections is answered at once, call by call).
* A Redis that stays silent past the command timeout (hung: alive at the TCP level, answering
  nothing) *stalls* the sender: every unanswered command fails at once, and so does every
  command issued while it is stalled, without being written, instead of queueing behind the
  silence. The silent connection is kept and read: Redis may still execute what was written
  on it, and its first answer ends the stall, so whatever is written afterwards runs after
  all of it (per-sender order holds for everything Redis executes, confirmed or not). If it
  stays silent for ``give_up_s`` more, it is given up (a Redis replaced behind the same
  address never answers it) and fresh connections are tried until one completes its
  handshake; what the old one carried may then still run when that Redis resumes.
* :meth:`OrderedSender.suspect_hung` (another command to the same Redis timed out) stalls an
  idle sender at once; a ``PING`` on its connection ends the stall when answered.

Failures are reported to the link (one warning per outage); a connection Redis closes while
nothing is outstanding is simply replaced.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection

from hubbub.core.broker import BrokerUnavailable

COMMAND_TIMEOUT_S: Final = 5.0
FAILURES: Final = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
_STOP_RECHECK_S: Final = 0.2
# Between two attempts at a fresh connection while the sender is stalled.
_REVIVE_PAUSE_S: Final = 0.1
_PING: Final = ("PING",)

Command = tuple[Any, ...]


def discard_outcome(future: asyncio.Future[Any]) -> None:
    """A done-callback for a command nobody awaits: its failure is reported elsewhere (the
    outage warning, or whatever awaited work it belongs to), not as an unretrieved error."""
    if not future.cancelled():
        future.exception()


async def all_answers(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Await every command's future (so none leaves an unretrieved error), then raise the
    first error, or return the answers in order."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task that talks to Redis and wait until it has ended.

    redis-py can swallow a cancellation that lands inside one of its commands (the command
    just completes), so a single cancel may leave a loop running; cancel again until it ends.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_RECHECK_S)
    if not task.cancelled():
        task.exception()  # retrieved: a stopping task's failure is not news


class OutageListener(Protocol):
    def note_failure(self, exc: BaseException) -> None: ...

    def note_success(self) -> None: ...


class OrderedSender:
    def __init__(
        self,
        connect: Callable[[], Connection],
        listener: OutageListener,
        *,
        redirect: Callable[[Command], Awaitable[Any]] | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        give_up_s: float | None = None,
    ) -> None:
        """``redirect`` re-issues a command Redis Cluster answered with MOVED or ASK through
        a client that follows redirections (and so learns the new slot owner). ``give_up_s``
        (by default twice the command timeout) is how long a stalled connection may stay
        silent before fresh ones are tried."""
        self._timeout_s = command_timeout_s
        self._give_up_s = 2 * command_timeout_s if give_up_s is None else give_up_s
        self._make_connection = connect
        self._listener = listener
        self._redirect = redirect
        self._connection: Connection | None = None
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        # Written and not yet answered: (command, its future, when its batch was written).
        self._unanswered: deque[tuple[Command, asyncio.Future[Any], float]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Why commands fail without being written, while Redis is known not to answer.
        self._stalled: BrokerUnavailable | None = None
        self._reviving: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def stalled(self) -> bool:
        return self._stalled is not None

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._stalled is not None:
            # Not written, so certainly not executed; queueing it would only make its
            # caller wait for a Redis that is known not to answer.
            future.set_exception(self._stalled)
            return future
        self._pending.append((args, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        return future

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._writer, self._reader, self._reviving, *self._background):
            await stop_task(task)
        self._writer = self._reviving = None
        stopping = BrokerUnavailable("the redis link is stopping")
        self._abandon(stopping, outage=False)
        self._fail_pending(stopping)

    def suspect_hung(self, exc: BaseException) -> None:
        """Another command to this Redis went unanswered past its timeout. An idle sender
        stalls at once (its next command would wait as long); a busy one is left to its own
        watchdog, so a slow command elsewhere fails none of its commands in flight."""
        if self._stalled is not None or self._stopping or self._unanswered or self._pending:
            return
        self._stall(exc)

    # --- writing ------------------------------------------------------------------------------

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                # Answers come back in write order, so the batch is due before it is written.
                now = loop.time()
                self._unanswered.extend((args, future, now) for args, future in batch)
                connection = self._connection
                try:
                    if connection is None:
                        connection = await self._connect()
                    packed = connection.pack_commands(args for args, _ in batch)
                    # No socket timeout on this connection: with one, redis-py writes from
                    # another task, a loop iteration later (see _connect).
                    await connection.send_packed_command(packed, check_health=False)
                except redis_errors.TimeoutError as exc:
                    self._stall(exc)  # connected, but the handshake went unanswered
                    continue
                except FAILURES as exc:
                    # A connection given up while this write waited on it was abandoned
                    # already, this batch with it; its replacement is not this failure's.
                    if self._connection is None or self._connection is connection:
                        self._abandon(exc, outage=True)
                    continue
                self._arm_watchdog(self._timeout_s)
        finally:
            self._writer = None

    async def _connect(self) -> Connection:
        connection = self._make_connection()
        # The handshake (HELLO, CLIENT SETINFO) waits for answers: bounded like a command,
        # or a hung Redis would hold it, and every command queued behind it, indefinitely.
        connection.socket_timeout = self._timeout_s
        await connection.connect()  # type: ignore[no-untyped-call]
        connection.socket_timeout = None  # the watchdog applies the command timeout instead
        self._connection = connection
        self._reader = asyncio.get_running_loop().create_task(self._read(connection))
        return connection

    # --- reading ------------------------------------------------------------------------------

    async def _read(self, connection: Connection) -> None:
        # Always reading, idle or not, so a connection Redis closed (a restart, its idle
        # timeout) is noticed and replaced before a command is written on it.
        try:
            while True:
                try:
                    answer: Any = await connection.read_response(disable_decoding=True)
                except redis_errors.ResponseError as refusal:
                    answer = refusal
                if not self._unanswered:
                    raise redis_errors.ConnectionError("redis sent an answer nobody asked for")
                args, future, _ = self._unanswered.popleft()
                if self._stalled is not None:
                    self._resume()
                self._listener.note_success()
                self._settle(args, future, answer)
        except FAILURES as exc:
            if self._reader is asyncio.current_task():
                self._reader = None
            if self._connection is connection:
                # Closed with nothing outstanding is not an outage: the next call reconnects
                # and finds out whether Redis is there.
                self._abandon(exc, outage=bool(self._unanswered))
                if self._stalled is not None:
                    self._revive()

    def _arm_watchdog(self, delay_s: float) -> None:
        if self._watchdog is None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(delay_s, self._check_overdue)

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._unanswered:
            return
        loop = asyncio.get_running_loop()
        if self._stalled is not None:
            # Silent ever since the stall began, give_up_s ago: a fresh connection may reach
            # a Redis this one never will.
            self._abandon(redis_errors.TimeoutError(str(self._stalled)), outage=False)
            self._revive()
            return
        overdue_in = self._unanswered[0][2] + self._timeout_s - loop.time()
        if overdue_in > 0:
            self._arm_watchdog(overdue_in)
            return
        self._stall(redis_errors.TimeoutError(f"no answer from redis in {self._timeout_s:g} s"))

    def _settle(self, args: Command, future: asyncio.Future[Any], answer: Any) -> None:
        if future.done():
            return
        if isinstance(answer, (redis_errors.MovedError, redis_errors.AskError)) and self._redirect:
            self._in_background(self._follow(args, future))
        elif isinstance(answer, redis_errors.RedisError):
            future.set_exception(BrokerUnavailable(str(answer)))
        else:
            future.set_result(answer)

    async def _follow(self, args: Command, future: asyncio.Future[Any]) -> None:
        assert self._redirect is not None
        try:
            result = await self._redirect(args)
        except redis_errors.RedisError as exc:
            if not future.done():
                future.set_exception(BrokerUnavailable(str(exc)))
        else:
            if not future.done():
                future.set_result(result)

    # --- a hung Redis -------------------------------------------------------------------------

    def _stall(self, exc: BaseException) -> None:
        """Redis is connected but not answering: fail everything now, write nothing more
        until it answers, and keep the connection (its first answer ends the stall)."""
        self._stalled = BrokerUnavailable(str(exc) or type(exc).__name__)
        self._listener.note_failure(exc)
        self._fail_pending(self._stalled)
        connection = self._connection
        if connection is None:
            # Nothing was written on a live connection: no answer is owed to what failed.
            self._abandon(exc, outage=False)
            self._revive()
            return
        for _, future, _ in self._unanswered:
            if not future.done():
                future.set_exception(self._stalled)
        if not self._unanswered:
            # Nothing outstanding whose answer would show Redis is back: ask it something.
            pinged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pinged.add_done_callback(discard_outcome)
            self._unanswered.append((_PING, pinged, asyncio.get_running_loop().time()))
            self._in_background(self._send_ping(connection))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._arm_watchdog(self._give_up_s)

    async def _send_ping(self, connection: Connection) -> None:
        try:
            await connection.send_packed_command(
                connection.pack_command(*_PING), check_health=False
            )
        except FAILURES as exc:
            if self._connection is connection:
                self._abandon(exc, outage=False)
                self._revive()

    def _resume(self) -> None:
        """The stalled connection answered: what is still unanswered is due from now."""
        self._stalled = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        now = asyncio.get_running_loop().time()
        self._unanswered = deque((args, future, now) for args, future, _ in self._unanswered)
        if self._unanswered:
            self._arm_watchdog(self._timeout_s)

    def _revive(self) -> None:
        if self._reviving is None and not self._stopping:
            self._reviving = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Stalled without a connection: try fresh ones until one completes its handshake
        (a hung Redis answers the pending one the moment it resumes)."""
        try:
            while self._connection is None:
                try:
                    await self._connect()
                except (*FAILURES, redis_errors.RedisError):  # a refused handshake too
                    await asyncio.sleep(_REVIVE_PAUSE_S)
        finally:
            self._reviving = None
        if self._stalled is not None:
            self._resume()
            self._listener.note_success()

    # --- failure ------------------------------------------------------------------------------

    def _fail_pending(self, error: BrokerUnavailable) -> None:
        failed, self._pending = self._pending, []
        for _, future in failed:
            if not future.done():
                future.set_exception(error)

    def _abandon(self, exc: BaseException, *, outage: bool) -> None:
        """Forget the connection and fail what was written on it; the next call reconnects."""
        if outage:
            self._listener.note_failure(exc)
        connection, self._connection = self._connection, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        failed = list(self._unanswered)
        self._unanswered.clear()
        error = BrokerUnavailable(str(exc) or type(exc).__name__)
        for _, future, _ in failed:
            if not future.done():
                future.set_exception(error)
        if connection is not None:
            self._in_background(connection.disconnect(nowait=True))

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
