"""Engine behaviour without sockets: typed variables, bounded watch chains, broken effects."""

from __future__ import annotations

import pytest

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.service import ConversationService
from tests.conversation.fakes import Clock, FakeChannel, command

PROJECT = """
id: engine
apiKeys: [{key: k}]
startingStageId: s
stages:
  - id: s
    variables:
      - {name: n, type: integer, default: 0}
      - {name: ping, type: integer, default: 0}
      - {name: pong, type: integer, default: 0}
      - {name: flag, type: boolean, default: false}
    actions:
      - name: bad_type
        trigger: {keywords: [bad]}
        effects:
          - {type: modify_variables, set: {n: "not a number", flag: "yes"}}
          - {type: generate_response, text: "n={{ stageVars.n }} flag={{ stageVars.flag }}"}
      - name: broken_template
        trigger: {keywords: [broken]}
        effects:
          - {type: generate_response, text: "{{ stageVars.n + 'x' }}"}
          - {type: modify_variables, set: {flag: "true"}}
      - name: start_ping
        trigger: {keywords: [ping]}
        effects: [{type: modify_variables, set: {ping: "{{ stageVars.ping + 1 }}"}}]
      - name: on_ping
        trigger: {variableChanged: [ping]}
        effects: [{type: modify_variables, set: {pong: "{{ stageVars.pong + 1 }}"}}]
      - name: on_pong
        trigger: {variableChanged: [pong]}
        effects: [{type: modify_variables, set: {ping: "{{ stageVars.ping + 1 }}"}}]
"""


@pytest.fixture
async def session(tmp_path):  # type: ignore[no-untyped-def]
    project = parse_project(PROJECT, "engine.yaml", TemplateRenderer())
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    service = ConversationService([project], store, clock=Clock())
    await service.start()
    channel = FakeChannel()
    handler = service.open_session(channel)
    assert (await command(channel, handler, type="auth", apiKey="k"))["success"]
    started = await command(channel, handler, type="start_conversation", userId="u")
    yield channel, handler, started["conversationId"], service
    await handler.closed()
    await service.stop()


async def test_typed_variables_from_the_client(session) -> None:  # type: ignore[no-untyped-def]
    channel, handler, conversation_id, service = session
    ok = await command(
        channel,
        handler,
        type="set_var",
        conversationId=conversation_id,
        stageId="s",
        variableName="n",
        variableValue="41",
    )
    assert ok["success"] is True
    assert service.running(conversation_id).stage_variables["n"] == 41
    bad = await command(
        channel,
        handler,
        type="set_var",
        conversationId=conversation_id,
        stageId="s",
        variableName="n",
        variableValue="many",
    )
    assert bad["error"] == "Invalid message: variableValue: n: 'many' is not a valid integer"
    assert service.running(conversation_id).stage_variables["n"] == 41


async def test_an_effect_with_a_bad_value_is_skipped_whole(session) -> None:  # type: ignore[no-untyped-def]
    channel, handler, conversation_id, _ = session
    await command(
        channel, handler, type="send_user_text_input", conversationId=conversation_id, text="bad"
    )
    end = await channel.wait_for(type="end_ai_generation_output")
    assert end["fullText"] == "n=0 flag=False"


async def test_a_broken_template_skips_its_effect_only(session) -> None:  # type: ignore[no-untyped-def]
    channel, handler, conversation_id, service = session
    await command(
        channel, handler, type="send_user_text_input", conversationId=conversation_id, text="broken"
    )
    await channel.wait_for(type="conversation_event", eventType="variables_changed")
    assert service.running(conversation_id).stage_variables["flag"] is True
    assert not any(m["type"] == "start_ai_generation_output" for m in channel.messages)


async def test_watch_chains_are_bounded(session) -> None:  # type: ignore[no-untyped-def]
    channel, handler, conversation_id, service = session
    await command(
        channel, handler, type="send_user_text_input", conversationId=conversation_id, text="ping"
    )
    # Queued behind the input's job, so its reply means the chain has run.
    await command(channel, handler, type="go_to_stage", conversationId=conversation_id, stageId="s")
    reply = await command(
        channel, handler, type="get_all_vars", conversationId=conversation_id, stageId="s"
    )
    # ping (by the action), then pong, ping, pong through watches: depth 3 stops the loop.
    assert reply["variables"]["ping"] + reply["variables"]["pong"] == 4
    conversation = service.running(conversation_id)
    assert conversation.state == "awaiting_user_input"


async def test_a_bug_in_a_handler_is_a_plain_refusal(session) -> None:  # type: ignore[no-untyped-def]
    channel, handler, conversation_id, _ = session

    async def broken(command: object) -> None:
        raise RuntimeError("secret internals")

    handler._handlers["get_var"] = broken
    reply = await command(
        channel,
        handler,
        type="get_var",
        conversationId=conversation_id,
        stageId="s",
        variableName="n",
    )
    assert reply["success"] is False and reply["error"] == "Internal error"
    assert "secret" not in str(channel.messages)
    still = await command(
        channel, handler, type="get_all_vars", conversationId=conversation_id, stageId="s"
    )
    assert still["success"] is True


async def test_a_bug_in_a_turn_fails_the_conversation(session) -> None:  # type: ignore[no-untyped-def]
    channel, handler, conversation_id, service = session
    conversation = service.running(conversation_id)

    async def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    conversation.actions.handle_user_text = broken
    await command(
        channel, handler, type="send_user_text_input", conversationId=conversation_id, text="hi"
    )
    failed = await channel.wait_for(type="conversation_event", eventType="conversation_failed")
    assert failed["eventData"] == {"reason": "internal error", "stageId": "s"}
    assert conversation.state == "failed"
    assert service.running(conversation_id) is None
    refused = await command(
        channel, handler, type="get_all_vars", conversationId=conversation_id, stageId="s"
    )
    assert refused["error"] == "No active conversation in this session"
    stored = await service.store.load(conversation_id)
    assert stored is not None and stored.record.status == "failed"
