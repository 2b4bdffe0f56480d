"""The seam between conversation transports (WebSocket ``/ws``, WebRTC DataChannels) and the
conversation engine. Both transports carry the same JSON protocol; only voice differs in
encoding (base64 inside JSON on the WebSocket, binary frames on the WebRTC ``audio`` channel).

A transport implements :class:`ClientChannel` for one connected client and feeds what it
receives into the :class:`SessionHandler` it got from :class:`SessionFactory.open_session`.
The session tells the channel where turns begin and end, so a transport never reads its own
outgoing JSON: the messages that start and end an AI turn come with the turn's id (a WebRTC
peer gates, paces and drops the turn's voice by it), and input turn notices say which voice
input turn is open (where a WebRTC microphone track's audio goes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from hubbub.conversation.protocol.pushes import VoiceChunk

TransportKind = Literal["websocket", "webrtc"]


@dataclass(frozen=True, slots=True)
class CloseReason:
    """Why the server closes a client connection: the WebSocket close code and reason. A
    WebRTC peer closes its DataChannels and peer connection, which carry no code."""

    code: int
    reason: str


AUTH_RATE_LIMITED: Final = CloseReason(1008, "too many authentication attempts")
AUTH_TIMEOUT: Final = CloseReason(1008, "authentication timeout")
OVER_MESSAGE_RATE: Final = CloseReason(4011, "over message rate")
GOING_AWAY: Final = CloseReason(1001, "server going away")


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

    def start_output_turn(self, output_turn_id: str, message: bytes) -> None:
        """Queue the turn's ``start_ai_generation_output`` (like :meth:`send_message`); the
        turn's voice may go out after it, never before."""

    def end_output_turn(self, output_turn_id: str, message: bytes, *, aborted: bool) -> None:
        """Queue the turn's ``end_ai_generation_output`` (or, ``aborted``, its
        ``abort_ai_generation_output``); an aborted turn's voice is void and stops at once."""

    async def voice_sent(self, output_turn_id: str) -> None:
        """Return once all the voice queued so far for the turn has been written to the
        network (a paced transport writes it in real time), or is void (aborted, superseded,
        connection closed). The turn's end is queued only after this: end means done."""

    def hold_voice(self, held: bool) -> None:
        """Pause (``held``) or resume the AI voice not yet written, mid-sentence: the user
        may be interrupting. A transport that cannot hold audio already sent ignores it."""

    def input_turn_opened(self, input_turn_id: str) -> None:
        """A voice input turn is open (``start_user_voice_input`` replied, or server VAD heard
        speech): audio without a turn id of its own belongs to it."""

    def input_turn_closed(self, input_turn_id: str) -> None:
        """The voice input turn is over (``end_user_voice_input`` replied, or its final
        transcript was made)."""

    def close(self, why: CloseReason) -> None:
        """Close the client connection (after too many auth attempts, a flood, ...)."""


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

    def going_away(self) -> None:  # noqa: B027 (optional: most handlers have nothing to do)
        """The server is shutting down and closes the transport next: end the live turn while
        the client can still hear it."""


class SessionFactory(Protocol):
    def open_session(self, channel: ClientChannel) -> SessionHandler: ...
