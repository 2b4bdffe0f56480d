"""The conversation bus: every push of a conversation, published on a realtime channel.

With ``[conversations] events_app`` set, each push of a conversation of a carried project
(``events_projects``, ``"*"`` for all) is published on the channel
``conversations/{projectId}/{conversationId}`` of that app, as the same JSON the conversation's
client receives (:func:`~hubbub.conversation.protocol.pushes.encode`) without ``sessionId``,
which names the client's session. Watchers subscribe with ordinary realtime credentials of the
app; the key's channel patterns decide who may watch what, as for any channel.

Publications leave in order, per bus (so per conversation), from one task: the conversation
never waits for them. The queue is bounded (``max_queued``): past it the oldest push waiting is
dropped and counted (:attr:`RealtimeBus.dropped`), since a watcher that falls that far behind
has lost the thread anyway. Voice audio is not published (it is not a push).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable
from typing import Final, Protocol

from hubbub.conversation.protocol.pushes import Push, encode
from hubbub.protocol.validation import is_valid_channel

log = logging.getLogger(__name__)

CHANNEL_PREFIX: Final = "conversations"
ALL_PROJECTS: Final = "*"
SENDER: Final = "conversation"  # the ``from`` watchers see
DEFAULT_MAX_QUEUED: Final = 10_000


def bus_channel(project_id: str, conversation_id: str) -> str:
    return f"{CHANNEL_PREFIX}/{project_id}/{conversation_id}"


class EventPublisher(Protocol):
    """Publishes on the server's behalf (:meth:`hubbub.core.node.Node.publish_event`)."""

    async def publish_event(self, app_id: str, channel: str, data: bytes, sender: str) -> int: ...


class RealtimeBus:
    def __init__(
        self,
        publisher: EventPublisher,
        app_id: str,
        projects: Iterable[str] = (ALL_PROJECTS,),
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        self._publisher = publisher
        self.app_id = app_id
        wanted = frozenset(projects)
        self._projects = None if ALL_PROJECTS in wanted else wanted
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._max_queued = max_queued
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0
        self.failed = 0

    def carries(self, project_id: str) -> bool:
        if self._projects is not None and project_id not in self._projects:
            return False
        # A project id that would add a level to the channel name (or read as a wildcard in
        # patterns), or that the channel grammar refuses, cannot have a bus channel.
        if "/" in project_id or "*" in project_id:
            return False
        return is_valid_channel(bus_channel(project_id, "conv_" + "0" * 32))  # ids are this long

    def publish(self, project_id: str, push: Push) -> None:
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:  # the first, then every thousandth: a bounded log
                log.warning(
                    "conversation bus: %d push(es) dropped, the broker is behind", self.dropped
                )
        self._queue.append((bus_channel(project_id, push.conversation_id), encode(push)))
        self._wake.set()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._publish_all(), name="conversation bus"
            )

    async def _publish_all(self) -> None:
        queue = self._queue
        while True:
            while queue:
                channel, data = queue.popleft()
                try:
                    await self._publisher.publish_event(self.app_id, channel, data, SENDER)
                    self.published += 1
                except Exception:  # the broker is down: this push is lost, the next may pass
                    self.failed += 1
                    log.warning("conversation bus: a push to %s was not published", channel)
            self._wake.clear()
            await self._wake.wait()

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
