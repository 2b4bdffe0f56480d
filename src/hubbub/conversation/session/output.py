"""Everything one session sends its client, in one place: each message stamped with the
session's ids, filtered by its settings, encoded
(:func:`~hubbub.conversation.protocol.pushes.encode`) and queued on the channel, the messages
that start and end AI turns with their turn, followed by the input turn notices.
"""

from __future__ import annotations

from msgspec import UNSET
from msgspec.structs import replace

from hubbub.conversation.protocol.pushes import (
    TRANSCRIPTS,
    AbortAiGenerationOutput,
    CommandFailed,
    ConversationEvent,
    EndAiGenerationOutput,
    EndUserVoiceInputReply,
    Push,
    Reply,
    ServerMessage,
    StartAiGenerationOutput,
    StartUserVoiceInputReply,
    TransportError,
    UserSpeakingStarted,
    UserTranscribedChunk,
    VoiceChunk,
    encode,
    optional,
)
from hubbub.conversation.session.channel import ClientChannel


class SessionOutput:
    def __init__(self, channel: ClientChannel, session_id: str) -> None:
        self._channel = channel
        self._session_id = session_id
        self.receive_transcripts = True  # receiveTranscriptionUpdates, once authenticated
        self.receive_events = True  # receiveEvents, once authenticated
        self.closed = False

    def push(self, push: Push) -> None:
        """A push from the session's conversation."""
        if self.closed:
            return
        wanted = (self.receive_transcripts or not isinstance(push, TRANSCRIPTS)) and (
            self.receive_events or not isinstance(push, ConversationEvent)
        )
        if wanted:
            self._send(replace(push, session_id=self._session_id))
        else:
            self._notify_input(push)  # sent or not: the turns are the same

    def reply(self, reply: Reply, request_id: str | None, conversation_id: str | None) -> None:
        """``success: true`` for a command; ``conversation_id`` is the session's conversation,
        named unless the reply names one itself."""
        reply.request_id = optional(request_id)
        reply.session_id = self._session_id
        if reply.conversation_id is UNSET:
            reply.conversation_id = optional(conversation_id)
        self._send(reply)

    def fail(self, command: str, request_id: str | None, text: str) -> None:
        self._send(
            CommandFailed(
                type=command,
                request_id=optional(request_id),
                session_id=self._session_id,
                error=text,
            )
        )

    def transport_error(self, text: str, request_id: str | None) -> None:
        self._send(TransportError(error=text, request_id=optional(request_id)))

    def voice(self, chunk: VoiceChunk) -> None:
        if not self.closed:
            self._channel.send_voice(chunk)

    def hold_voice(self, held: bool) -> None:
        if not self.closed:
            self._channel.hold_voice(held)

    async def voice_sent(self, output_turn_id: str) -> None:
        if not self.closed:
            await self._channel.voice_sent(output_turn_id)

    def _send(self, message: ServerMessage) -> None:
        if self.closed:
            return
        channel = self._channel
        match message:
            case StartAiGenerationOutput(output_turn_id=turn_id):
                channel.start_output_turn(turn_id, encode(message))
            case EndAiGenerationOutput(output_turn_id=turn_id):
                channel.end_output_turn(turn_id, encode(message), aborted=False)
            case AbortAiGenerationOutput(output_turn_id=turn_id):
                channel.end_output_turn(turn_id, encode(message), aborted=True)
            case _:
                channel.send_message(encode(message))
                self._notify_input(message)

    def _notify_input(self, message: ServerMessage) -> None:
        """Tell the channel about voice input turns, right after the message that opens or
        closes one."""
        match message:
            case (
                UserSpeakingStarted(input_turn_id=turn_id)
                | StartUserVoiceInputReply(input_turn_id=turn_id)
            ):
                self._channel.input_turn_opened(turn_id)
            case UserTranscribedChunk(input_turn_id=turn_id, is_final=True) | (
                EndUserVoiceInputReply(input_turn_id=turn_id)
            ):
                self._channel.input_turn_closed(turn_id)
            case _:
                pass
