"""Counting on every node: the copies of one counted event, each accounted for once.

An event that must be counted (a publish with ``count_everywhere``, a kick) or a listing
question carries a tally token. Redis answers the PUBLISH with the number of copies it handed
out; every copy is accounted for exactly once: a copy that comes back to its own node counts 0
(it was delivered locally already), every other node answers with what its copy reached (0
for a duplicate) on the asking node's reply channel. A listing question is the same exchange,
its answers carrying what each node found. A node that died holding a copy never answers, so
a tally waits at most ``TALLY_WAIT_S`` and counts what did answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, Final

from hubbub.brokers.redis_sender import all_answers
from hubbub.core.broker import NodeAnswer

# How long a counted publish, a kick or a listing question waits for the other nodes.
TALLY_WAIT_S: Final = 1.0


class Tally:
    """Counts (and listing answers) from the copies of one counted event or question,
    complete once every copy answered."""

    __slots__ = ("accounted", "answers", "complete", "expected", "token", "total")

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.expected: int | None = None
        self.accounted = 0
        self.total = 0
        self.answers: list[NodeAnswer] = []
        self.complete = asyncio.Event()

    def add(self, count: int, answer: NodeAnswer | None = None) -> None:
        self.accounted += 1
        self.total += count
        if answer is not None:
            self.answers.append(answer)
        self._check()

    def expect(self, copies: int) -> None:
        self.expected = copies
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.accounted >= self.expected:
            self.complete.set()


class Tallies:
    """One node's open tallies, by token (``<node id>:<serial>``, unique in the cluster)."""

    def __init__(self, node_id: str, wait_s: float = TALLY_WAIT_S) -> None:
        self._node_id = node_id
        self._wait_s = wait_s
        self._open: dict[bytes, Tally] = {}
        self._serial = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._open)

    def open(self) -> Tally:
        tally = Tally(f"{self._node_id}:{next(self._serial)}".encode())
        self._open[tally.token] = tally
        return tally

    def get(self, token: bytes | None) -> Tally | None:
        return self._open.get(token) if token is not None else None

    def discard(self, tally: Tally) -> None:
        """Give up on ``tally`` (its event was refused or never handed over)."""
        self._open.pop(tally.token, None)

    async def close(self, tally: Tally, sends: list[asyncio.Future[Any]]) -> int:
        """The total once the copies the ``sends`` handed out answered (or the wait ended)."""
        try:
            copies = await all_answers(sends)
            tally.expect(sum(copies))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._wait_s):
                    await tally.complete.wait()
            return tally.total
        finally:
            self.discard(tally)
