"""The seam between conversation transports (WebSocket ``/ws``, WebRTC DataChannels) and the
conversation engine. Both transports carry the same JSON protocol; only voice differs in
encoding (base64 inside JSON on the WebSocket, binary frames on the WebRTC ``audio`` channel).

A transport implements :class:`ClientChannel` for one connected client and feeds what it
receives into the :class:`SessionHandler` it got from :class:`SessionFactory.open_session`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol

TransportKind = Literal["websocket", "webrtc"]


@dataclass(frozen=True, slots=True)
class VoiceChunk:
    """Synthesized speech for one output turn, already in the session's receiveAudioFormat."""

    conversation_id: str
    output_turn_id: str
    chunk_id: str
    audio: bytes
    audio_format: str
    ordinal: int
    is_final: bool


class ClientChannel(Protocol):
    """What the engine may do to one connected client."""

    @property
    def kind(self) -> TransportKind: ...

    @property
    def client_ip(self) -> str:
        """Already resolved through trusted proxies by the transport."""
        ...

    def send_message(self, message: bytes) -> None:
        """Queue one JSON control message (encoded). FIFO with everything else sent."""

    def send_voice(self, chunk: VoiceChunk) -> None:
        """Queue synthesized speech (the transport encodes and paces it)."""

    def close(self) -> None:
        """Close the client connection (e.g. after too many auth attempts)."""


class SessionHandler(ABC):
    """One client session, created when the transport's control path opens."""

    @abstractmethod
    async def handle_message(self, payload: str | bytes) -> None:
        """One JSON control message from the client."""

    @abstractmethod
    async def handle_audio(self, input_turn_id: str, audio: bytes) -> None:
        """Client audio for an input turn, in the session's sendAudioFormat (WebRTC frames)."""

    @abstractmethod
    async def closed(self) -> None:
        """The transport is gone: end the session; the conversation stays resumable."""


class SessionFactory(Protocol):
    def open_session(self, channel: ClientChannel) -> SessionHandler: ...
