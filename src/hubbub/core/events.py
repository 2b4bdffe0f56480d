"""The event sink: what happens in channels, told to whoever listens (webhooks).

Contract for every :class:`EventSink`:

* ``emit`` never blocks, never awaits and never raises: it is called on the realtime path
  (a publish, a subscribe) and in the middle of presence bookkeeping. A sink that cannot keep
  up drops events by its own bounded policy; the caller never waits for it.
* ``wants`` is a cheap question the caller asks first, so that nothing is built for events
  no one listens to (``client_event`` for every publish, in particular).

Who emits what (spec 16.3):

* ``channel_occupied`` / ``channel_vacated`` / ``member_added`` / ``member_removed`` are
  decided by the :class:`~hubbub.core.broker.PresenceStore`, in the same atomic step that
  changes the membership (one process: a dict update; Redis: a Lua script), so each is
  decided exactly once per cluster. Such an event carries ``seq``: the position the store
  gave it among the lifecycle events of its channel, which lets a cluster put events decided
  on different nodes back in order before they are sent.
* ``client_event`` is emitted by the node for every publish from a client connection.

A pattern subscription (``devices/*``) occupies no channel: it is not in any channel's
presence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol


class ChannelEventName(StrEnum):
    CHANNEL_OCCUPIED = "channel_occupied"
    CHANNEL_VACATED = "channel_vacated"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    CLIENT_EVENT = "client_event"


LIFECYCLE_EVENTS: Final = frozenset(
    {
        ChannelEventName.CHANNEL_OCCUPIED,
        ChannelEventName.CHANNEL_VACATED,
        ChannelEventName.MEMBER_ADDED,
        ChannelEventName.MEMBER_REMOVED,
    }
)


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    name: ChannelEventName
    app_id: str
    channel: str
    user_id: str | None = None  # the peer a member or client event is about
    data: bytes | None = None  # client_event: the published payload, raw JSON
    seq: int | None = None  # lifecycle events from a cluster store: order within the channel


class EventSink(Protocol):
    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        """Whether any listener of ``app_id`` takes events called ``name``."""

    def emit(self, event: ChannelEvent) -> None:
        """Take an event (never blocks, never awaits, never raises)."""


class NoEvents:
    """The sink of a server without webhooks."""

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        return False

    def emit(self, event: ChannelEvent) -> None:
        return None


NO_EVENTS: Final = NoEvents()
