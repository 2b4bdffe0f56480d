"""The seam between conversation transports (WebSocket ``/ws``, WebRTC DataChannels) and the
conversation engine. Both transports carry the same JSON protocol; only voice differs in
encoding (base64 inside JSON on the WebSocket, binary frames on the WebRTC ``audio`` channel).

A transport implements :class:`ClientChannel` for one connected client and feeds what it
receives into the :class:`SessionHandler` it got from :class:`SessionFactory.open_session`.
Besides the encoded messages, the session tells the channel when turns open and close (the
turn notices), so a transport never has to read its own outgoing JSON: a WebRTC peer gates
and drops paced AI voice by output turn, and routes a microphone track's audio to the open
input turn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Protocol

from hubbub.conversation.protocol.pushes import VoiceChunk

TransportKind = Literal["websocket", "webrtc"]


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

    def output_turn_started(self, output_turn_id: str) -> None:
        """The turn's ``start_ai_generation_output`` has just been queued: its voice may go."""

    def output_turn_ended(self, output_turn_id: str, *, aborted: bool) -> None:
        """The turn's ``end_ai_generation_output`` (or, ``aborted``, its
        ``abort_ai_generation_output``) has just been queued; an aborted turn's voice is void."""

    def input_turn_opened(self, input_turn_id: str) -> None:
        """A voice input turn is open (``start_user_voice_input`` replied, or server VAD heard
        speech): audio without a turn id of its own belongs to it."""

    def input_turn_closed(self, input_turn_id: str) -> None:
        """The voice input turn is over (``end_user_voice_input`` replied, or its final
        transcript was made)."""

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
