"""A connection's frame lane: its frames handled one after another, off its reading path.

Transports await :meth:`~hubbub.core.node.Node.handle_frame` once per frame, so whatever a
frame waits for holds up the reading of that connection. For most frames that is a broker
hand-over of microseconds; for a frame a backend proxy must decide it is a round trip of up
to ``proxy_timeout_ms``. A connection whose key has a proxy therefore gets a lane:

* ``put`` queues the frame and returns at once, so the transport keeps reading (pings are
  answered, a close is noticed) while earlier frames wait for the backend;
* one task handles the queued frames in arrival order, so the connection's publishes reach
  the broker in the order it sent them, each after its verdict;
* the queue is bounded: when ``max_pending`` frames wait, ``put`` waits too, and the
  transport stops reading that connection (TCP backpressure) instead of growing memory;
* other connections have lanes (or none) of their own and never wait for this one.

The task exists only while frames are queued: an idle lane holds no task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class FrameLane(Generic[Item]):
    __slots__ = ("_current", "_handle", "_max_pending", "_queue", "_space", "_stopped")

    def __init__(self, handle: Callable[[Item], Awaitable[None]], max_pending: int) -> None:
        self._handle = handle
        self._max_pending = max(1, max_pending)
        self._queue: deque[Item] = deque()
        self._current: asyncio.Task[None] | None = None
        self._space: asyncio.Future[None] | None = None
        self._stopped = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def put(self, item: Item) -> None:
        """Queue ``item``; waits only while the lane is full."""
        while len(self._queue) >= self._max_pending and not self._stopped:
            if self._space is None:
                self._space = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._space)
        if self._stopped:
            return
        self._queue.append(item)
        if self._current is None:
            self._current = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue and not self._stopped:
                item = self._queue.popleft()
                self._wake_writer()
                try:
                    await self._handle(item)
                except Exception:
                    log.exception("unexpected error handling a queued frame")
        finally:
            self._current = None

    def _wake_writer(self) -> None:
        if self._space is not None:
            space, self._space = self._space, None
            if not space.done():
                space.set_result(None)

    async def stop(self) -> None:
        """Drop what is queued and wait for the frame being handled (it completes normally,
        so the node's state stays consistent)."""
        self._stopped = True
        self._queue.clear()
        self._wake_writer()
        current = self._current
        if current is not None and current is not asyncio.current_task():
            await asyncio.shield(current)
