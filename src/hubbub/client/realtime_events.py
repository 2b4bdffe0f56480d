"""What :class:`~hubbub.client.realtime.RealtimeClient` yields and raises: its events (one
dataclass per kind) and its two errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubbub.errors import ClientLibraryError


class RealtimeError(ClientLibraryError):
    """The server refused a request (``code`` is its error code, spec section 6)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class DisconnectedError(ClientLibraryError):
    """No answer: the connection dropped (and the request could not be retried)."""


@dataclass(frozen=True, slots=True)
class Connected:
    peer_id: str
    reconnected: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    code: int | None
    reason: str
    will_reconnect: bool


@dataclass(frozen=True, slots=True)
class GoingAway:
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A (re)subscribe was acknowledged. ``recovered``: None for a first subscribe, else
    whether every publication since the last one delivered was replayed."""

    channel: str
    recovered: bool | None
    offset: int | None
    epoch: str | None


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    sender: str
    data: Any
    offset: int | None = None
    epoch: str | None = None
    sender_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Direct:
    sender: str
    data: Any
    sender_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    channel: str
    joined: tuple[dict[str, Any], ...]
    left: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ServerError:
    """An error frame that answered no request of ours."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Published:
    offset: int | None
    epoch: str | None
    duplicate: bool


Event = (
    Connected | Disconnected | GoingAway | Subscribed | Message | Direct | Presence | ServerError
)
