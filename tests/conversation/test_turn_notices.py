"""How a session tells its channel where turns begin and end (what a WebRTC peer gates its
voice and routes its microphone by): the messages that start and end an AI turn are handed over
with the turn's id; input turn notices come right after the message that opens or closes the
input turn, whether that message is sent or filtered out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.service import ConversationService
from tests.conversation.fake_speech import LOUD, QUIET, FakeSpeech
from tests.conversation.fakes import Clock, FakeChannel, command

PROJECT = """
id: turns
apiKeys: [{key: k}]
acceptVoice: true
startingStageId: s
ruleResponder: {chunkDelayMs: 1000}
stages:
  - id: s
    actions:
      - name: __on_enter
        effects: [{type: generate_response, text: "Hello."}]
      - name: count
        trigger: {keywords: [count]}
        effects: [{type: generate_response, text: "One two three."}]
"""


class TimelineChannel(FakeChannel):
    """Records messages and turn boundaries in one timeline: ``("message", type)`` or
    ``(boundary, turn id)``."""

    def __init__(self) -> None:
        super().__init__()
        self.timeline: list[tuple[str, Any]] = []

    def send_message(self, message: bytes) -> None:
        self.timeline.append(("message", json.loads(message)["type"]))
        super().send_message(message)

    def send_voice(self, chunk: object) -> None:
        pass

    def start_output_turn(self, output_turn_id: str, message: bytes) -> None:
        self._output_turn("output_turn_started", output_turn_id, message)

    def end_output_turn(self, output_turn_id: str, message: bytes, *, aborted: bool) -> None:
        name = "output_turn_aborted" if aborted else "output_turn_ended"
        self._output_turn(name, output_turn_id, message)

    def _output_turn(self, name: str, output_turn_id: str, message: bytes) -> None:
        """Recorded as the message, then the notice (the order a peer acts in)."""
        self.send_message(message)
        self.timeline.append((name, output_turn_id))
        assert json.loads(message)["outputTurnId"] == output_turn_id

    def input_turn_opened(self, input_turn_id: str) -> None:
        self.timeline.append(("input_turn_opened", input_turn_id))

    def input_turn_closed(self, input_turn_id: str) -> None:
        self.timeline.append(("input_turn_closed", input_turn_id))

    def after(self, message_type: str) -> tuple[str, Any]:
        """The entry right after the (last) message of ``message_type``."""
        at = max(i for i, entry in enumerate(self.timeline) if entry == ("message", message_type))
        return self.timeline[at + 1]

    def notices(self, name: str) -> list[Any]:
        return [turn for kind, turn in self.timeline if kind == name]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ConversationService]:
    project = parse_project(PROJECT, "turns.yaml", TemplateRenderer())
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    service = ConversationService(
        [project],
        store,
        clock=Clock(),
        speech=FakeSpeech(),  # type: ignore[arg-type]
    )
    await service.start()
    yield service
    await service.stop()


async def started(
    service: ConversationService, **settings: Any
) -> tuple[TimelineChannel, Any, dict[str, str]]:
    channel = TimelineChannel()
    session = service.open_session(channel)
    auth = await command(channel, session, type="auth", apiKey="k", sessionSettings=settings)
    assert auth["success"] is True
    reply = await command(channel, session, type="start_conversation", userId="u")
    await channel.wait_for(type="end_ai_generation_output")
    return channel, session, {"conversationId": reply["conversationId"]}


async def test_output_turns_are_announced_after_their_start_and_end(
    service: ConversationService,
) -> None:
    channel, session, on = await started(service)
    try:
        greeting = channel.messages[-1]["outputTurnId"]
        assert channel.after("start_ai_generation_output") == ("output_turn_started", greeting)
        assert channel.after("end_ai_generation_output") == ("output_turn_ended", greeting)

        await command(channel, session, type="send_user_text_input", text="count", **on)
        start = await channel.wait_for(type="start_ai_generation_output")
        await command(channel, session, type="abort_ai_generation", **on)
        turn = start["outputTurnId"]
        assert channel.after("abort_ai_generation_output") == ("output_turn_aborted", turn)
        assert channel.notices("output_turn_started") == [greeting, turn]
        assert channel.notices("output_turn_ended") == [greeting]
    finally:
        await session.closed()


async def test_client_voice_turns_are_announced_after_their_replies(
    service: ConversationService,
) -> None:
    channel, session, on = await started(service)
    try:
        reply = await command(channel, session, type="start_user_voice_input", **on)
        turn = reply["inputTurnId"]
        assert channel.after("start_user_voice_input") == ("input_turn_opened", turn)
        audio = base64.b64encode(LOUD).decode()
        await command(
            channel, session, type="send_user_voice_chunk", inputTurnId=turn, audioData=audio, **on
        )
        await command(channel, session, type="end_user_voice_input", inputTurnId=turn, **on)
        assert channel.after("end_user_voice_input") == ("input_turn_closed", turn)
        refused = await command(
            channel, session, type="end_user_voice_input", inputTurnId=turn, **on
        )
        assert refused["success"] is False
        assert channel.notices("input_turn_closed") == [turn]  # a refusal closes nothing
    finally:
        await session.closed()


@pytest.mark.parametrize("transcripts", [True, False])
async def test_server_vad_turns_are_announced_with_or_without_transcripts(
    tmp_path: Path, transcripts: bool
) -> None:
    project = parse_project(
        PROJECT.replace("acceptVoice: true", "acceptVoice: true\nasrConfig: {serverVad: true}"),
        "vad.yaml",
        TemplateRenderer(),
    )
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'vad.db'}")
    service = ConversationService([project], store, clock=Clock(), speech=FakeSpeech())  # type: ignore[arg-type]
    await service.start()
    try:
        channel, session, on = await started(service, receiveTranscriptionUpdates=transcripts)
        for audio in (LOUD, QUIET):
            data = base64.b64encode(audio).decode()
            await command(
                channel, session, type="send_user_voice_chunk", inputTurnId="", audioData=data, **on
            )
        await channel.wait_for(type="conversation_event", eventType="message")
        speaking = next(m for m in channel.messages if m["type"] == "user_speaking_started")
        turn = speaking["inputTurnId"]
        assert channel.after("user_speaking_started") == ("input_turn_opened", turn)
        assert channel.notices("input_turn_closed") == [turn]
        finals = [
            m for m in channel.messages if m["type"] == "user_transcribed_chunk" and m["isFinal"]
        ]
        assert len(finals) == (1 if transcripts else 0)
        if transcripts:
            assert channel.after("user_transcribed_chunk") == ("input_turn_closed", turn)
        await session.closed()
    finally:
        await service.stop()
