"""The one fake clock of the tests, and a scheduler that fires its timers as it moves.

Code under test takes its time as a ``Callable[[], float]`` (Unix seconds) and its timers from
a ``Scheduler``; tests pass these so time moves only when the test says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

START_TIME = 1_700_000_000.0  # a plausible "now" (November 2023), in Unix seconds


class FakeClock:
    """Wall-clock seconds moved by hand: ``clock.now = ...`` or a scheduler's ``advance_to``."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """``call_later`` on a :class:`FakeClock`: timers fire only in :meth:`advance_to`."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self._clock.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when``, firing due timers in order on the way."""
        while True:
            due = sorted(
                (t for t in self.timers if not t.cancelled and t.due <= when), key=lambda t: t.due
            )
            if not due:
                break
            timer = due[0]
            self.timers.remove(timer)
            self._clock.now = max(self._clock.now, timer.due)
            timer.callback()
        self._clock.now = when

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]
