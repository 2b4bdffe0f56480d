"""Structural fuzzing (Hypothesis) of what a conversation client or a project file can reach:
the message decoder, a whole session fed arbitrary messages, the binary audio frame and the
client audio converters, and the project YAML loader. Each must answer with its documented
errors only, never an unexpected exception (issue 11, item 2). Short enough for CI."""

from __future__ import annotations

import asyncio
import json
import re
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.conversation.project.loader import ProjectError, parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol import commands as m
from hubbub.conversation.protocol import errors
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.service import ConversationService
from hubbub.conversation.voice.audio import AudioFormatError, ClientToEngine
from hubbub.protocol.audio_frame import AudioFrame, DroppedFrame, DropReason, decode_audio_frame
from tests.conversation.fakes import Clock, FakeChannel

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- JSON values and messages ----------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = sorted(
    {"type", "requestId", "sessionId", "conversationId", "text", "apiKey", "sessionSettings"}
    | {"userId", "stageId", "agentId", "timezone", "stageVariables", "inputTurnId", "audioData"}
    | {"ordinal", "variableName", "variableValue", "actionName", "toolId", "parameters"}
)
message_types = st.sampled_from(sorted(m.COMMANDS)) | st.text(max_size=12) | json_values


@st.composite
def messages(draw: st.DrawFn) -> str:
    """A JSON text shaped like a command: a known (or bogus) type, known fields with values of
    any JSON type, sometimes deep nesting, sometimes a broken encoding."""
    body: dict[str, Any] = {"type": draw(message_types)}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        body[name] = draw(json_values)
    if draw(st.booleans()):
        body["apiKey"] = "k"
    if draw(st.booleans()):
        body["conversationId"] = ""  # the session's conversation, filled in by feed()
    if draw(st.integers(0, 9)) == 0:
        depth = draw(st.integers(60, 3_000))
        body["variableValue"] = json.loads("[" * min(depth, 200) + "]" * min(depth, 200))
        text = json.dumps(body)
        return text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    text = json.dumps(body)
    match draw(st.integers(0, 5)):
        case 0:  # truncated
            return text[: draw(st.integers(0, len(text)))]
        case 1:  # a character changed
            at = draw(st.integers(0, len(text) - 1))
            return text[:at] + draw(st.sampled_from('{}[]",:\\\x00é')) + text[at + 1 :]
        case _:
            return text


TRANSPORT_ERRORS = {
    errors.INVALID_JSON,
    errors.UNKNOWN_MESSAGE_TYPE,
    errors.AUTHENTICATION_REQUIRED,
    errors.TOO_MANY_AUTH_ATTEMPTS,
    errors.MESSAGE_RATE_EXCEEDED,
    errors.AUTHENTICATION_TIMEOUT,
    errors.SESSION_ID_MISMATCH,
}
DOCUMENTED = re.compile(
    r"Invalid message: .+: .+|Feature '[a-z_]+' is not permitted by this API key"
    r"|Cannot receive user input in current state: [a-z_]+"
    r"|(Input turn|Stage) ID mismatch: expected .*, got .*"
    r"|Conversation cannot be resumed: [a-z_]+"
    r"|Connection type '(websocket|webrtc)' is not permitted by this API key",
    re.DOTALL,
)
COMMAND_ERRORS = {
    value
    for name, value in vars(errors).items()
    if name.isupper() and isinstance(value, str) and name != "INTERNAL_ERROR"
}


def documented(text: str) -> bool:
    return text in TRANSPORT_ERRORS or text in COMMAND_ERRORS or bool(DOCUMENTED.fullmatch(text))


@FUZZ
@given(messages())
def test_the_message_decoder_answers_only_documented_errors(payload: str) -> None:
    for data in (payload, payload.encode("utf-8", "surrogatepass")):
        try:
            command = m.decode_command(m.decode_envelope(data))
        except m.DecodeFailure as failure:
            assert documented(failure.message), failure.message
        else:
            assert isinstance(command, tuple(m.COMMANDS.values()))


PROJECT = """
id: fuzz
apiKeys: [{key: k}]
startingStageId: s
stages:
  - id: s
    variables: [{name: n, type: integer, default: 0}]
    actions:
      - name: hello
        trigger: {keywords: [hello]}
        effects: [{type: generate_response, text: "Hi {{ stageVars.n }}."}]
  - id: t
"""


async def feed(tmp_path: Path, payloads: list[str]) -> list[dict[str, Any]]:
    project = parse_project(PROJECT, "fuzz.yaml", TemplateRenderer())
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}")
    service = ConversationService([project], store, clock=Clock(), speech=None)
    await service.start()
    channel = FakeChannel()
    session = service.open_session(channel)
    try:
        await session.handle_message('{"type": "auth", "apiKey": "k"}')
        await session.handle_message('{"type": "start_conversation", "userId": "u"}')
        started = await channel.wait_for(type="start_conversation")
        conversation_id = started["conversationId"]
        for payload in payloads:
            await session.handle_message(
                payload.replace('"conversationId": ""', f'"conversationId": "{conversation_id}"')
            )
        # The session still answers a well-formed command correctly.
        await session.handle_message(
            json.dumps(
                {
                    "type": "get_all_vars",
                    "requestId": "last",
                    "conversationId": conversation_id,
                    "stageId": "s",
                }
            )
        )
        await channel.wait_for(requestId="last")
        for task in list(session._pending):  # replies still being prepared
            await asyncio.wait_for(task, 10)
    finally:
        await session.closed()
        await service.stop()
    return channel.messages


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(messages(), max_size=25))
def test_a_session_fed_arbitrary_messages_answers_only_documented_errors(
    tmp_path_factory: Any, payloads: list[str]
) -> None:
    sent = asyncio.run(feed(tmp_path_factory.mktemp("fuzz"), payloads))
    assert all(isinstance(message.get("type"), str) for message in sent)
    for message in sent:
        if "error" in message:
            assert documented(message["error"]), message
    last = next(m for m in sent if m.get("requestId") == "last")
    assert last["type"] in ("get_all_vars", "error")  # the rate limit may have closed it
    if last["type"] == "get_all_vars" and last["success"] is False:
        assert last["error"] in (
            errors.NO_ACTIVE_CONVERSATION,
            errors.CONVERSATION_ID_MISMATCH,
        ) or last["error"].startswith("Stage ID mismatch")


# --- audio -----------------------------------------------------------------------------------


@st.composite
def audio_frames(draw: st.DrawFn) -> tuple[bytes, int, bytes, bytes]:
    """A frame whose length prefix is right, off by a little, or arbitrary, and whose turn id
    is valid UTF-8 or not."""
    turn_id = draw(st.text(max_size=40).map(str.encode) | st.binary(max_size=40))
    audio = draw(st.binary(max_size=400))
    announced = draw(
        st.just(len(turn_id))
        | st.integers(0, 0xFFFF)
        | st.integers(-3, 3).map(lambda d: max(0, len(turn_id) + d))
    )
    frame = announced.to_bytes(2, "little") + turn_id + audio
    return (
        frame[: draw(st.sampled_from([len(frame), 0, 1, 2, len(frame) // 2]))],
        announced,
        turn_id,
        audio,
    )


@FUZZ
@given(audio_frames())
def test_audio_frames_decode_as_their_layout_says(case: tuple[bytes, int, bytes, bytes]) -> None:
    frame, announced, _, _ = case
    result = decode_audio_frame(frame)
    if len(frame) < 2:
        assert result == DroppedFrame(DropReason.TOO_SHORT)
    elif 2 + announced > len(frame):
        assert result == DroppedFrame(DropReason.TURN_ID_OVERRUN)
    else:
        id_bytes = frame[2 : 2 + announced]
        try:
            turn_id = id_bytes.decode("utf-8")
        except UnicodeDecodeError:
            assert result == DroppedFrame(DropReason.TURN_ID_NOT_UTF8)
        else:
            assert result == AudioFrame(turn_id, frame[2 + announced :])


CLIENT_FORMATS = [
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


@FUZZ
@given(st.sampled_from(CLIENT_FORMATS), st.lists(st.binary(max_size=700), max_size=6))
def test_client_audio_of_any_bytes_converts_or_is_an_audio_format_error(
    audio_format: str, chunks: list[bytes]
) -> None:
    converter = ClientToEngine(audio_format)
    for chunk in chunks:
        try:
            pcm = converter.convert(chunk)
        except AudioFormatError:
            assert audio_format == "opus"
            continue
        assert len(pcm) % 2 == 0
    assert len(converter.flush()) % 2 == 0


# --- project YAML ----------------------------------------------------------------------------

YAML_KEYS = ["id", "apiKeys", "startingStageId", "stages", "tools", "actions", "agents"]
YAML_KEYS += ["constants", "conversationTimeoutS", "providers", "asrConfig", "acceptVoice"]
YAML_KEYS += ["key", "type", "url", "effects", "trigger", "keywords", "patterns", "prompt"]
YAML_KEYS += ["variables", "name", "text"]
yaml_keys = st.sampled_from(YAML_KEYS)
yaml_values = st.recursive(
    scalars | st.sampled_from(["{{ x", "{% for %}", "(", "s", "webhook", "python", "k"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(yaml_keys | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)
VALID = yaml.safe_load(PROJECT)
RENDERER = TemplateRenderer()


@st.composite
def project_texts(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 4))
    if choice == 0:  # the valid project with some of its values replaced
        document = json.loads(json.dumps(VALID))
        for key in draw(st.lists(yaml_keys, max_size=3)):
            document[key] = draw(yaml_values)
        return yaml.safe_dump(document)
    if choice == 1:  # an arbitrary document
        return yaml.safe_dump(draw(yaml_values))
    if choice == 2:  # the valid text with characters changed
        text = PROJECT
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text) - 1))
            text = (
                text[:at]
                + draw(st.sampled_from([*":-[]{}&*!|>%@`'\"\t\n #", "\x00"]))
                + text[at + 1 :]
            )
        return text
    if choice == 3:  # deep nesting and aliases
        depth = draw(st.sampled_from([3, 60, 1_200]))
        return "constants: {a: " + "[" * depth + "]" * depth + "}\n" + PROJECT
    return draw(st.text(alphabet=string.printable, max_size=200))


@FUZZ
@given(project_texts())
def test_project_yaml_loads_or_fails_with_a_project_error(text: str) -> None:
    try:
        loaded = parse_project(text, "fuzz.yaml", RENDERER)
    except ProjectError as exc:
        assert exc.source == "fuzz.yaml"
        assert exc.path and exc.reason
        assert "Traceback" not in str(exc)
    else:
        assert loaded.project.starting_stage_id in loaded.stages
