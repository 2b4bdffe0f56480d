"""The node's timers on the running event loop (the ``Scheduler`` a live node gets; tests
pass a fake one that fires only when they move its clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hubbub.core.connection import Cancellable


class LoopScheduler:
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback)
