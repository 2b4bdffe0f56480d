"""Every message the server sends a conversation client (spec sections 1-4) as a typed struct,
and :func:`encode`, the one place they become wire JSON.

Attributes are snake_case here and camelCase on the wire (``rename="camel"``); a message's
``type`` is its struct's tag. An attribute typed ``X | UnsetType`` is *left out* of the JSON
while unset (``requestId`` when the command had none, an event's turn ids, a push's
``sessionId`` until a session delivers it); ``None`` is sent as ``null`` (``asrConfig``,
``variableValue``, timing figures).

Three families, split by who sends them:

* **pushes** (:data:`Push`): what a conversation tells its client unasked, created by the
  runtime and by voice input. The delivering session adds its ``sessionId``.
* **replies**: the answer to one command, ``type`` = the command's type. Success replies
  (``success: true``) have a struct per command; :class:`CommandFailed` is every refusal.
* :class:`TransportError`: the message itself was unusable or not allowed (section 1).

Voice (:class:`VoiceChunk`) is raw audio, not JSON: each transport encodes it its own way
(:class:`SendAiVoiceChunk` with base64 on the WebSocket, binary frames on WebRTC).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType


class _Wire(msgspec.Struct, rename="camel"):
    """camelCase on the wire; every class that adds fields makes them keyword-only."""


class _Tagged(_Wire, tag_field="type"):
    pass


def optional(value: str | None) -> str | UnsetType:
    """``None`` (absent in the command) as an attribute that is left out of the JSON."""
    return UNSET if value is None else value


# --- pushes -----------------------------------------------------------------------------------


class _Push(_Tagged, kw_only=True):
    conversation_id: str
    session_id: str | UnsetType = UNSET


class UserTranscribedChunk(_Push, tag="user_transcribed_chunk", kw_only=True):
    input_turn_id: str
    chunk_id: str
    chunk_text: str
    ordinal: int
    is_final: bool


class UserSpeakingStarted(_Push, tag="user_speaking_started", kw_only=True):
    input_turn_id: str


class StartAiGenerationOutput(_Push, tag="start_ai_generation_output", kw_only=True):
    output_turn_id: str
    expect_voice: bool


class AiTranscribedChunk(_Push, tag="ai_transcribed_chunk", kw_only=True):
    output_turn_id: str
    chunk_id: str
    chunk_text: str
    ordinal: int
    is_final: bool


class EndAiGenerationOutput(_Push, tag="end_ai_generation_output", kw_only=True):
    output_turn_id: str
    full_text: str


class AbortAiGenerationOutput(_Push, tag="abort_ai_generation_output", kw_only=True):
    output_turn_id: str
    accumulated_text: str


class ConversationEvent(_Push, tag="conversation_event", kw_only=True):
    event_type: str
    event_data: dict[str, Any]
    input_turn_id: str | UnsetType = UNSET
    output_turn_id: str | UnsetType = UNSET


Push = (
    UserTranscribedChunk
    | UserSpeakingStarted
    | StartAiGenerationOutput
    | AiTranscribedChunk
    | EndAiGenerationOutput
    | AbortAiGenerationOutput
    | ConversationEvent
)
# Sent only to sessions with receiveTranscriptionUpdates.
TRANSCRIPTS: Final = (UserTranscribedChunk, AiTranscribedChunk)


# --- voice ------------------------------------------------------------------------------------


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


class SendAiVoiceChunk(_Tagged, tag="send_ai_voice_chunk", kw_only=True):
    """A :class:`VoiceChunk` inside JSON (the WebSocket's way; spec section 4)."""

    conversation_id: str
    output_turn_id: str
    chunk_id: str
    audio_data: str  # base64
    audio_format: str
    ordinal: int
    is_final: bool

    @classmethod
    def of(cls, chunk: VoiceChunk) -> SendAiVoiceChunk:
        return cls(
            conversation_id=chunk.conversation_id,
            output_turn_id=chunk.output_turn_id,
            chunk_id=chunk.chunk_id,
            audio_data=base64.b64encode(chunk.audio).decode(),
            audio_format=chunk.audio_format,
            ordinal=chunk.ordinal,
            is_final=chunk.is_final,
        )


# --- replies ----------------------------------------------------------------------------------


class _Reply(_Tagged, kw_only=True):
    # The sending session stamps all three (SessionOutput.reply): every reply but auth's
    # names the session's conversation (the one the command acted on).
    request_id: str | UnsetType = UNSET
    session_id: str | UnsetType = UNSET
    conversation_id: str | UnsetType = UNSET
    success: bool = True


class ProjectSettings(_Wire, kw_only=True):
    project_id: str
    accept_voice: bool
    generate_voice: bool
    asr_config: dict[str, Any] | None  # None when the session sends no voice


class AuthReply(_Reply, tag="auth", kw_only=True):
    project_settings: ProjectSettings


class StartConversationReply(_Reply, tag="start_conversation", kw_only=True):
    pass


class ResumeConversationReply(_Reply, tag="resume_conversation", kw_only=True):
    pass


class EndConversationReply(_Reply, tag="end_conversation", kw_only=True):
    pass


class SendUserTextInputReply(_Reply, tag="send_user_text_input", kw_only=True):
    input_turn_id: str


class StartUserVoiceInputReply(_Reply, tag="start_user_voice_input", kw_only=True):
    input_turn_id: str


class SendUserVoiceChunkReply(_Reply, tag="send_user_voice_chunk", kw_only=True):
    input_turn_id: str


class EndUserVoiceInputReply(_Reply, tag="end_user_voice_input", kw_only=True):
    input_turn_id: str


class GoToStageReply(_Reply, tag="go_to_stage", kw_only=True):
    pass


class SetVarReply(_Reply, tag="set_var", kw_only=True):
    pass


class GetVarReply(_Reply, tag="get_var", kw_only=True):
    variable_name: str
    variable_value: Any


class GetAllVarsReply(_Reply, tag="get_all_vars", kw_only=True):
    variables: dict[str, Any]


class RunActionReply(_Reply, tag="run_action", kw_only=True):
    result: list[dict[str, Any]]  # content parts


class CallToolReply(_Reply, tag="call_tool", kw_only=True):
    result: list[dict[str, Any]]  # content parts


class AbortAiGenerationReply(_Reply, tag="abort_ai_generation", kw_only=True):
    pass


Reply = (
    AuthReply
    | StartConversationReply
    | ResumeConversationReply
    | EndConversationReply
    | SendUserTextInputReply
    | StartUserVoiceInputReply
    | SendUserVoiceChunkReply
    | EndUserVoiceInputReply
    | GoToStageReply
    | SetVarReply
    | GetVarReply
    | GetAllVarsReply
    | RunActionReply
    | CallToolReply
    | AbortAiGenerationReply
)


class CommandFailed(_Wire, kw_only=True):
    """A command understood but refused; ``type`` is the command's. Carries no conversation."""

    type: str
    request_id: str | UnsetType = UNSET
    session_id: str
    success: bool = False
    error: str


class TransportError(_Tagged, tag="error", kw_only=True):
    """The message was unusable or not allowed; sent before a session id matters."""

    error: str
    request_id: str | UnsetType = UNSET


ServerMessage = Push | Reply | CommandFailed | TransportError | SendAiVoiceChunk

_ENCODER: Final = msgspec.json.Encoder()


def encode(message: ServerMessage) -> bytes:
    """The wire JSON of one server message."""
    return _ENCODER.encode(message)
