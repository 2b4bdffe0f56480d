"""Client commands as typed structs, and their decoding into data or a protocol error text.

Decoding is two steps so that each failure gets its documented text: JSON into a mapping
(``Invalid JSON``), the ``type`` looked up (``Unknown message type``), then the command's
fields validated (``Invalid message: <field>: <reason>``). Unknown fields are ignored.
Attributes are snake_case; the wire's camelCase names (``requestId``) are mapped by msgspec
(``rename="camel"``), and its validation errors name the wire's fields.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

from hubbub.conversation.protocol import errors
from hubbub.errors import ConversationLayerError
from hubbub.protocol.json_depth import exceeds_json_depth

AudioFormat = Literal[
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    "mulaw",
    "alaw",
    "opus",
]


class _Command(msgspec.Struct, kw_only=True, rename="camel"):
    request_id: str | None = None
    session_id: str | None = None


class SessionSettings(msgspec.Struct, kw_only=True, rename="camel"):
    send_voice_input: bool = True
    send_text_input: bool = True
    receive_voice_output: bool | None = None
    receive_transcription_updates: bool | None = None
    receive_events: bool | None = None
    send_audio_format: AudioFormat = "pcm_16000"
    receive_audio_format: AudioFormat = "pcm_16000"


class Auth(_Command):
    api_key: str
    # null means all defaults, like an absent field (clients differ in how they leave it out)
    session_settings: SessionSettings | None = None

    def settings(self) -> SessionSettings:
        return self.session_settings or SessionSettings()


class StartConversation(_Command):
    user_id: str
    stage_id: str | None = None
    agent_id: str | None = None
    timezone: str | None = None
    stage_variables: dict[str, Any] = {}


class ConversationCommand(_Command):
    """A command on the session's conversation, which it names."""

    conversation_id: str


class ResumeConversation(ConversationCommand):
    pass


class EndConversation(ConversationCommand):
    pass


class SendUserTextInput(ConversationCommand):
    text: str


class StartUserVoiceInput(ConversationCommand):
    pass


class SendUserVoiceChunk(ConversationCommand):
    input_turn_id: str
    audio_data: str
    ordinal: int = 0


class EndUserVoiceInput(ConversationCommand):
    input_turn_id: str


class GoToStage(ConversationCommand):
    stage_id: str


class SetVar(ConversationCommand):
    stage_id: str
    variable_name: str
    variable_value: Any = None


class GetVar(ConversationCommand):
    stage_id: str
    variable_name: str


class GetAllVars(ConversationCommand):
    stage_id: str


class RunAction(ConversationCommand):
    action_name: str
    parameters: dict[str, Any] = {}


class CallTool(ConversationCommand):
    tool_id: str
    parameters: dict[str, Any] = {}


class AbortAiGeneration(ConversationCommand):
    pass


COMMANDS: dict[str, type[_Command]] = {
    "auth": Auth,
    "start_conversation": StartConversation,
    "resume_conversation": ResumeConversation,
    "end_conversation": EndConversation,
    "send_user_text_input": SendUserTextInput,
    "start_user_voice_input": StartUserVoiceInput,
    "send_user_voice_chunk": SendUserVoiceChunk,
    "end_user_voice_input": EndUserVoiceInput,
    "go_to_stage": GoToStage,
    "set_var": SetVar,
    "get_var": GetVar,
    "get_all_vars": GetAllVars,
    "run_action": RunAction,
    "call_tool": CallTool,
    "abort_ai_generation": AbortAiGeneration,
}

FEATURE_OF: dict[str, str] = {
    "start_conversation": "conversation_control",
    "resume_conversation": "conversation_control",
    "end_conversation": "conversation_control",
    "abort_ai_generation": "conversation_control",
    "send_user_text_input": "text_input",
    "start_user_voice_input": "voice_input",
    "send_user_voice_chunk": "voice_input",
    "end_user_voice_input": "voice_input",
    "go_to_stage": "stage_control",
    "set_var": "vars_access",
    "get_var": "vars_access",
    "get_all_vars": "vars_access",
    "run_action": "run_action",
    "call_tool": "call_tool",
}

_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_DECODER = msgspec.json.Decoder()
# JSON nested deeper than this is "Invalid JSON" (spec section 11): deep enough for any real
# variable value, shallow enough that nothing downstream (templates, the store) can recurse far.
MAX_JSON_DEPTH: Final = 64


class Envelope(msgspec.Struct):
    type: str
    request_id: str | None
    body: dict[str, Any]


class DecodeFailure(ConversationLayerError):
    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


def decode_json(payload: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``payload`` decoded, or :class:`DecodeFailure` (``Invalid JSON``) when it is not JSON or
    nests containers deeper than ``max_depth``; never a ``RecursionError``."""
    if exceeds_json_depth(payload, max_depth):  # the one depth rule every decoder shares
        raise DecodeFailure(errors.INVALID_JSON)
    try:
        return _DECODER.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise DecodeFailure(errors.INVALID_JSON) from None


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (values decoded from a message always encode)."""
    return len(msgspec.json.encode(value))


def decode_envelope(payload: str | bytes) -> Envelope:
    body = decode_json(payload)
    if not isinstance(body, dict):
        raise DecodeFailure(errors.INVALID_JSON)
    request_id = body.get("requestId")
    request_id = request_id if isinstance(request_id, str) else None
    message_type = body.get("type")
    if not isinstance(message_type, str) or message_type not in COMMANDS:
        raise DecodeFailure(errors.UNKNOWN_MESSAGE_TYPE, request_id)
    return Envelope(message_type, request_id, body)


def decode_command(envelope: Envelope) -> Any:
    try:
        return msgspec.convert(envelope.body, COMMANDS[envelope.type])
    except msgspec.ValidationError as exc:
        text = str(exc)
        missing = _MISSING.match(text)
        if missing:
            field, reason = missing.group("field"), "required field missing"
        else:
            found = _MSGSPEC_PATH.search(text)
            field = found.group("path") if found else "(message)"
            reason = text[: found.start()] if found else text
        raise DecodeFailure(errors.invalid_message(field, reason), envelope.request_id) from None
