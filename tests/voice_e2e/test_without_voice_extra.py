"""A voice project on a server without the `voice` extra (no SpeechStack): voice commands are
refused with the documented text, answers come as text only (expectVoice false)."""

from __future__ import annotations

from pathlib import Path

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.service import ConversationService
from tests.conversation.fakes import Clock, FakeChannel, command

PROJECT = """
id: talky
apiKeys: [{key: k}]
acceptVoice: true
generateVoice: true
startingStageId: s
stages:
  - id: s
    onEnter: generate_response
    actions:
      - name: __on_enter
        effects: [{type: generate_response, text: "Hello there."}]
"""


async def test_voice_is_disabled_without_the_speech_stack(tmp_path: Path) -> None:
    project = parse_project(PROJECT, "talky.yaml", TemplateRenderer())
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'talky.db'}")
    service = ConversationService([project], store, clock=Clock(), speech=None)
    await service.start()
    channel = FakeChannel()
    session = service.open_session(channel)
    try:
        auth = await command(channel, session, type="auth", apiKey="k")
        assert auth["projectSettings"]["acceptVoice"] is False
        assert auth["projectSettings"]["generateVoice"] is False
        started = await command(channel, session, type="start_conversation", userId="u")
        conversation_id = started["conversationId"]
        greeting = await channel.wait_for(type="start_ai_generation_output")
        assert greeting["expectVoice"] is False
        await channel.wait_for(type="end_ai_generation_output")
        for kind, fields in [
            ("start_user_voice_input", {}),
            ("send_user_voice_chunk", {"inputTurnId": "tinp_x", "audioData": "AAAA"}),
            ("end_user_voice_input", {"inputTurnId": "tinp_x"}),
        ]:
            refused = await command(
                channel, session, type=kind, conversationId=conversation_id, **fields
            )
            assert refused["success"] is False
            assert refused["error"] == "Voice input is disabled for this session"
        # Binary audio (WebRTC) is dropped without a word; the session still works.
        await session.handle_audio("tinp_x", b"\0" * 640)
        text = await command(
            channel, session, type="send_user_text_input", conversationId=conversation_id, text="hi"
        )
        assert text["success"] is True
    finally:
        await session.closed()
        await service.stop()
