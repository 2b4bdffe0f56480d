"""Python clients for Hubbub: :class:`RealtimeClient` for pub/sub that survives reconnects
(``/v1``), :class:`ConversationClient` for live conversations (``/ws``)."""

from hubbub.client.conversation import ConversationClient, ConversationError
from hubbub.client.realtime import (
    Connected,
    Direct,
    Disconnected,
    DisconnectedError,
    GoingAway,
    Message,
    Presence,
    Published,
    RealtimeClient,
    RealtimeError,
    ServerError,
    Subscribed,
)

__all__ = [
    "Connected",
    "ConversationClient",
    "ConversationError",
    "Direct",
    "Disconnected",
    "DisconnectedError",
    "GoingAway",
    "Message",
    "Presence",
    "Published",
    "RealtimeClient",
    "RealtimeError",
    "ServerError",
    "Subscribed",
]
