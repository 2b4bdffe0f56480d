"""The exact JSON of every kind of server message (spec sections 1-4): field names, values, and
which optional fields are left out rather than sent as null. Socket-free: a scripted session
over a recording channel, with in-process fakes for the speech providers.

Random ids become their prefix (``conv_``), timing figures become ``"<ms>"``; messages are
compared as a set, since the other suites check the order.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.service import ConversationService
from hubbub.core.outbound import OutFrame
from hubbub.transports.conversation_ws import WebSocketClientChannel
from tests.conversation.fake_speech import LOUD, QUIET, FakeSpeech
from tests.conversation.fakes import Clock, FakeChannel, command

WIRE = """
id: wire
apiKeys: [{key: k}]
acceptVoice: true
generateVoice: true
startingStageId: s
ruleResponder: {chunkDelayMs: 1000, fallbackText: "Pardon?"}
tools:
  - {id: echo, type: python, callable: tests.conversation.lab_tools:echo}
stages:
  - id: s
    variables:
      - {name: n, type: integer, default: 0}
      - {name: empty}
    actions:
      - name: __on_enter
        effects: [{type: generate_response, text: "Hello."}]
      - name: count
        trigger: {keywords: [count]}
        effects: [{type: generate_response, text: "One two three."}]
      - name: use_echo
        effects: [{type: call_tool, toolId: echo, parameters: {word: "{{ parameters.word }}"}}]
  - id: t
"""

VAD = """
id: vad
apiKeys: [{key: v}]
acceptVoice: true
startingStageId: s
asrConfig: {serverVad: true}
stages: [{id: s}]
"""


class VoiceChannel(FakeChannel):
    def __init__(self) -> None:
        super().__init__()
        self.voice: list[VoiceChunk] = []

    def send_voice(self, chunk: object) -> None:
        assert isinstance(chunk, VoiceChunk)
        self.voice.append(chunk)


_ID = re.compile(r"^(sess|conv|tinp|tout|chnk|evnt)_[0-9a-f]{32}$")


def normalised(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: normalised(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if key == "requestId":
        return "<request>"
    if isinstance(value, str) and _ID.match(value):
        return value[:5]
    if key.endswith("Ms") and isinstance(value, float | int) and key != "autoEndSilenceDurationMs":
        return "<ms>"
    return value


def shapes(messages: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(normalised(m), sort_keys=True) for m in messages}


async def new_service(tmp_path: Path) -> ConversationService:
    renderer = TemplateRenderer()
    projects = [
        parse_project(WIRE, "wire.yaml", renderer),
        parse_project(VAD, "vad.yaml", renderer),
    ]
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'wire.db'}")
    service = ConversationService(
        projects,
        store,
        clock=Clock(),
        python_tools=frozenset({"tests.conversation.lab_tools:echo"}),
        speech=FakeSpeech(),  # type: ignore[arg-type]
    )
    await service.start()
    return service


async def scripted_text_and_voice(service: ConversationService) -> list[dict[str, Any]]:
    channel = VoiceChannel()
    session = service.open_session(channel)
    try:
        await session.handle_message(b"not json")
        await channel.wait_for(type="error", error="Invalid JSON")
        await command(channel, session, type="nope")
        await command(channel, session, type="get_var")
        await session.handle_message(json.dumps({"type": "get_var"}))
        await channel.wait_for(type="error", error="Authentication required")
        await command(channel, session, type="auth", apiKey="wrong")
        await command(channel, session, type="auth", apiKey="k")
        await command(channel, session, type="auth", apiKey="k")
        started = await command(channel, session, type="start_conversation", userId="u")
        on = {"conversationId": started["conversationId"]}
        await channel.wait_for(type="conversation_event", eventType="message")

        await command(channel, session, type="send_user_text_input", text="count", **on)
        await channel.wait_for(type="ai_transcribed_chunk")
        # The abort and the turn's message event come before the command's reply.
        await command(channel, session, type="abort_ai_generation", **on)

        await command(channel, session, type="send_user_text_input", text="hi", **on)
        await channel.wait_for(type="end_ai_generation_output")
        await channel.wait_for(type="conversation_event", eventType="message")
        await command(
            channel, session, type="set_var", stageId="s", variableName="n", variableValue="5", **on
        )
        await command(channel, session, type="get_var", stageId="s", variableName="empty", **on)
        await command(channel, session, type="get_var", stageId="s", variableName="n", **on)
        await command(channel, session, type="get_all_vars", stageId="s", **on)
        await command(channel, session, type="get_all_vars", stageId="t", **on)
        await command(
            channel, session, type="run_action", actionName="use_echo", parameters={"w": 1}, **on
        )
        await command(channel, session, type="call_tool", toolId="echo", parameters={}, **on)
        await command(channel, session, type="go_to_stage", stageId="t", **on)

        voice = await command(channel, session, type="start_user_voice_input", **on)
        turn = {"inputTurnId": voice["inputTurnId"]}
        audio = base64.b64encode(LOUD).decode()
        await command(channel, session, type="send_user_voice_chunk", audioData=audio, **on, **turn)
        await command(channel, session, type="end_user_voice_input", **on, **turn)
        await channel.wait_for(type="end_ai_generation_output")
        await channel.wait_for(type="conversation_event", eventType="message")
        await command(channel, session, type="end_conversation", **on)  # after its event
        await command(channel, session, type="end_conversation", **on)
    finally:
        await session.closed()
    assert channel.voice, "the fake TTS spoke"
    return channel.messages


async def scripted_resume(service: ConversationService) -> list[dict[str, Any]]:
    first = FakeChannel()
    session = service.open_session(first)
    no_voice = {"sendVoiceInput": False}
    await command(first, session, type="auth", apiKey="v", sessionSettings=no_voice)
    started = await command(first, session, type="start_conversation", userId="u")
    await session.closed()
    channel = FakeChannel()
    session = service.open_session(channel)
    try:
        await command(channel, session, type="auth", apiKey="v")
        on = {"conversationId": started["conversationId"]}
        await command(channel, session, type="resume_conversation", **on)
        await channel.wait_for(type="conversation_event", eventType="conversation_resume")
        for audio in (LOUD, QUIET):
            await command(
                channel,
                session,
                type="send_user_voice_chunk",
                inputTurnId="",
                audioData=base64.b64encode(audio).decode(),
                **on,
            )
        await channel.wait_for(type="end_ai_generation_output")
        await channel.wait_for(type="conversation_event", eventType="message")
    finally:
        await session.closed()
    return first.messages + channel.messages


async def test_every_server_message_keeps_its_wire_form(tmp_path: Path) -> None:
    service = await new_service(tmp_path)
    try:
        messages = await scripted_text_and_voice(service)
        messages += await scripted_resume(service)
    finally:
        await service.stop()
    assert sorted(shapes(messages)) == sorted(shapes(EXPECTED))


def test_websocket_voice_chunks_keep_their_wire_form() -> None:
    class Outbox:
        def __init__(self) -> None:
            self.frames: list[OutFrame] = []

        def push(self, frame: OutFrame) -> None:
            self.frames.append(frame)

    outbox = Outbox()
    channel = WebSocketClientChannel(outbox, "127.0.0.1")  # type: ignore[arg-type]
    channel.send_voice(VoiceChunk("conv_1", "tout_1", "chnk_1", b"\x01\x02", "pcm_16000", 3, False))
    assert [json.loads(f.payload) for f in outbox.frames] == [
        {
            "type": "send_ai_voice_chunk",
            "conversationId": "conv_1",
            "outputTurnId": "tout_1",
            "chunkId": "chnk_1",
            "audioData": "AQI=",
            "audioFormat": "pcm_16000",
            "ordinal": 3,
            "isFinal": False,
        }
    ]


EXPECTED: list[dict[str, Any]] = [
    {
        "accumulatedText": "One ",
        "conversationId": "conv_",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "abort_ai_generation_output",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "",
        "conversationId": "conv_",
        "isFinal": True,
        "ordinal": 1,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "",
        "conversationId": "conv_",
        "isFinal": True,
        "ordinal": 2,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "Hello.",
        "conversationId": "conv_",
        "isFinal": False,
        "ordinal": 0,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "One ",
        "conversationId": "conv_",
        "isFinal": False,
        "ordinal": 0,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "Pardon?",
        "conversationId": "conv_",
        "isFinal": False,
        "ordinal": 0,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "Sorry, I did not understand that. Could you ",
        "conversationId": "conv_",
        "isFinal": False,
        "ordinal": 0,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "hel",
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "isFinal": False,
        "ordinal": 0,
        "sessionId": "sess_",
        "type": "user_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "hello there",
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "isFinal": True,
        "ordinal": 1,
        "sessionId": "sess_",
        "type": "user_transcribed_chunk",
    },
    {
        "chunkId": "chnk_",
        "chunkText": "rephrase?",
        "conversationId": "conv_",
        "isFinal": False,
        "ordinal": 1,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "ai_transcribed_chunk",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "asrDurationMs": "<ms>",
            "processingDurationMs": "<ms>",
            "role": "user",
            "text": "hello there",
        },
        "eventType": "message",
        "inputTurnId": "tinp_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "asrDurationMs": None,
            "processingDurationMs": "<ms>",
            "role": "user",
            "text": "count",
        },
        "eventType": "message",
        "inputTurnId": "tinp_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "asrDurationMs": None,
            "processingDurationMs": "<ms>",
            "role": "user",
            "text": "hi",
        },
        "eventType": "message",
        "inputTurnId": "tinp_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"changes": {"n": 5}, "stageId": "s"},
        "eventType": "variables_changed",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"fromStageId": "s", "toStageId": "t"},
        "eventType": "jump_to_stage",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"initialVariables": {"empty": None, "n": 0}, "stageId": "s"},
        "eventType": "conversation_start",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"initialVariables": {}, "stageId": "s"},
        "eventType": "conversation_start",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "llmDurationMs": None,
            "role": "assistant",
            "text": "Hello.",
            "timeToFirstAudioMs": "<ms>",
            "timeToFirstTokenMs": "<ms>",
            "totalTurnDurationMs": "<ms>",
            "ttsDurationMs": "<ms>",
        },
        "eventType": "message",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "llmDurationMs": None,
            "role": "assistant",
            "text": "One ",
            "timeToFirstAudioMs": None,
            "timeToFirstTokenMs": "<ms>",
            "totalTurnDurationMs": "<ms>",
            "ttsDurationMs": "<ms>",
        },
        "eventType": "message",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "llmDurationMs": None,
            "role": "assistant",
            "text": "Pardon?",
            "timeToFirstAudioMs": "<ms>",
            "timeToFirstTokenMs": "<ms>",
            "totalTurnDurationMs": "<ms>",
            "ttsDurationMs": "<ms>",
        },
        "eventType": "message",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "llmDurationMs": None,
            "role": "assistant",
            "text": "Sorry, I did not understand that. Could you rephrase?",
            "timeToFirstAudioMs": None,
            "timeToFirstTokenMs": "<ms>",
            "totalTurnDurationMs": "<ms>",
            "ttsDurationMs": None,
        },
        "eventType": "message",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"name": "__on_enter", "parameters": {}},
        "eventType": "action",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"name": "count", "parameters": {}},
        "eventType": "action",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"name": "use_echo", "parameters": {"w": 1}},
        "eventType": "action",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {
            "parameters": {"word": ""},
            "result": {"echo": "", "stage": "s"},
            "toolId": "echo",
        },
        "eventType": "tool_call",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"parameters": {}, "result": {"echo": None, "stage": "s"}, "toolId": "echo"},
        "eventType": "tool_call",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"previousStatus": "awaiting_user_input", "stageId": "s"},
        "eventType": "conversation_resume",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "eventData": {"reason": "ended by client", "stageId": "t"},
        "eventType": "conversation_end",
        "sessionId": "sess_",
        "type": "conversation_event",
    },
    {
        "conversationId": "conv_",
        "expectVoice": False,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "start_ai_generation_output",
    },
    {
        "conversationId": "conv_",
        "expectVoice": True,
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "start_ai_generation_output",
    },
    {
        "conversationId": "conv_",
        "fullText": "Hello.",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "end_ai_generation_output",
    },
    {
        "conversationId": "conv_",
        "fullText": "Pardon?",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "end_ai_generation_output",
    },
    {
        "conversationId": "conv_",
        "fullText": "Sorry, I did not understand that. Could you rephrase?",
        "outputTurnId": "tout_",
        "sessionId": "sess_",
        "type": "end_ai_generation_output",
    },
    {
        "conversationId": "conv_",
        "inputTurnId": "",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "send_user_voice_chunk",
    },
    {
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "end_user_voice_input",
    },
    {
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "send_user_text_input",
    },
    {
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "send_user_voice_chunk",
    },
    {
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "start_user_voice_input",
    },
    {
        "conversationId": "conv_",
        "inputTurnId": "tinp_",
        "sessionId": "sess_",
        "type": "user_speaking_started",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "result": [{"contentType": "text", "text": '{"echo":"","stage":"s"}'}],
        "sessionId": "sess_",
        "success": True,
        "type": "run_action",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "result": [{"contentType": "text", "text": '{"echo":null,"stage":"s"}'}],
        "sessionId": "sess_",
        "success": True,
        "type": "call_tool",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "abort_ai_generation",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "end_conversation",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "get_all_vars",
        "variables": {"empty": None, "n": 5},
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "get_var",
        "variableName": "empty",
        "variableValue": None,
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "get_var",
        "variableName": "n",
        "variableValue": 5,
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "go_to_stage",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "resume_conversation",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "set_var",
    },
    {
        "conversationId": "conv_",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "start_conversation",
    },
    {
        "error": "Already authenticated",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": False,
        "type": "auth",
    },
    {"error": "Authentication required", "requestId": "<request>", "type": "error"},
    {"error": "Authentication required", "type": "error"},
    {"error": "Invalid JSON", "type": "error"},
    {
        "error": "Invalid or inactive API key",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": False,
        "type": "auth",
    },
    {
        "error": "No active conversation in this session",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": False,
        "type": "end_conversation",
    },
    {
        "error": "Stage ID mismatch: expected s, got t",
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": False,
        "type": "get_all_vars",
    },
    {"error": "Unknown message type", "requestId": "<request>", "type": "error"},
    {
        "projectSettings": {
            "acceptVoice": False,
            "asrConfig": None,
            "generateVoice": False,
            "projectId": "vad",
        },
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "auth",
    },
    {
        "projectSettings": {
            "acceptVoice": True,
            "asrConfig": {
                "autoEndSilenceDurationMs": 800,
                "language": "en-US",
                "provider": "pocketsphinx",
                "serverVad": False,
                "settings": {},
                "unintelligiblePlaceholder": "**inaudible**",
            },
            "generateVoice": True,
            "projectId": "wire",
        },
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "auth",
    },
    {
        "projectSettings": {
            "acceptVoice": True,
            "asrConfig": {
                "autoEndSilenceDurationMs": 800,
                "language": "en-US",
                "provider": "pocketsphinx",
                "serverVad": True,
                "settings": {},
                "unintelligiblePlaceholder": "**inaudible**",
            },
            "generateVoice": False,
            "projectId": "vad",
        },
        "requestId": "<request>",
        "sessionId": "sess_",
        "success": True,
        "type": "auth",
    },
]
