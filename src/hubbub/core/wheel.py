"""A shared timer wheel: many deadlines, one loop timer.

A connection that needs something done at a time (its token's expiry, its next keepalive
check, the end of its handshake's grace) is put in the wheel's slot for that time instead of
getting a timer of its own: slots are ``resolution`` seconds wide and a deadline goes in the
slot that *starts* at or before it (rounding down), so an item fires at most ``resolution``
early and never late. The wheel keeps one timer, for its earliest non-empty slot, and none
while it is empty. Adding and removing are O(1) (a slot is a dict used as an ordered set).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


Item = TypeVar("Item", bound=Hashable)


class TimerWheel(Generic[Item]):
    __slots__ = (
        "_clock",
        "_fire",
        "_resolution",
        "_scheduler",
        "_slots",
        "_starts",
        "_timer",
        "_timer_slot",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        clock: Callable[[], float],
        resolution: float,
        fire: Callable[[Item], None],
    ) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self._scheduler = scheduler
        self._clock = clock
        self._resolution = resolution
        self._fire = fire
        self._slots: dict[int, dict[Item, None]] = {}
        self._starts: list[int] = []  # a heap of slot numbers (possibly stale: slot emptied)
        self._timer: Cancellable | None = None
        self._timer_slot = 0

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots.values())

    def add(self, item: Item, deadline: float) -> int:
        """Fire ``item`` at ``deadline`` (at most one resolution early). Returns the slot
        number, which :meth:`remove` needs."""
        number = math.floor(deadline / self._resolution)
        slot = self._slots.get(number)
        if slot is None:
            slot = self._slots[number] = {}
            heapq.heappush(self._starts, number)
        slot[item] = None
        if self._timer is None or number < self._timer_slot:
            self._schedule(number)
        return number

    def remove(self, item: Item, number: int) -> None:
        slot = self._slots.get(number)
        if slot is None:
            return
        slot.pop(item, None)
        if not slot:
            del self._slots[number]
            if not self._slots and self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._starts.clear()

    def _schedule(self, number: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = number
        delay = max(0.0, number * self._resolution - self._clock())
        self._timer = self._scheduler.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        due = math.floor(self._clock() / self._resolution)
        starts, slots = self._starts, self._slots
        while starts and starts[0] <= due:
            slot = slots.pop(heapq.heappop(starts), None)
            if slot is None:
                continue
            for item in slot:
                self._fire(item)
        while starts and starts[0] not in slots:
            heapq.heappop(starts)
        if starts and self._timer is None:
            self._schedule(starts[0])
