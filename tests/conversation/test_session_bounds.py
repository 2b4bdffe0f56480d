"""The session's abuse bounds (conversation spec sections 2 and 11), without sockets: the auth
limiter counts failures only, the message rate, the text input bound, the auth deadline, deep
JSON, and that an ended conversation's memory is let go while the session lives on."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.channel import AUTH_RATE_LIMITED, AUTH_TIMEOUT, OVER_MESSAGE_RATE
from hubbub.conversation.session.limits import SessionLimits
from hubbub.conversation.session.service import ConversationService
from hubbub.conversation.session.session import Session
from tests.conversation.fakes import Clock, FakeChannel, command

PROJECT = """
id: bounds
apiKeys: [{key: k}]
startingStageId: s
stages:
  - id: s
    actions:
      - name: hello
        trigger: {keywords: [hello]}
        effects: [{type: generate_response, text: "Hi there."}]
"""


@pytest_asyncio.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[ConversationService] = []

    async def make(**options: Any) -> ConversationService:
        project = parse_project(PROJECT, "bounds.yaml", TemplateRenderer())
        store = ConversationStore.from_url(
            f"sqlite+aiosqlite:///{tmp_path / f'bounds{len(started)}.db'}"
        )
        service = ConversationService([project], store, clock=Clock(), speech=None, **options)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


async def open_session(service: ConversationService, ip: str = "192.0.2.1") -> tuple[Any, Any]:
    channel = FakeChannel()
    channel.client_ip = ip  # type: ignore[misc]
    return channel, service.open_session(channel)


async def authenticated(service: ConversationService) -> tuple[FakeChannel, Session]:
    channel, session = await open_session(service)
    reply = await command(channel, session, type="auth", apiKey="k")
    assert reply["success"] is True, reply
    return channel, session


async def started(service: ConversationService) -> tuple[FakeChannel, Session, str]:
    channel, session = await authenticated(service)
    reply = await command(channel, session, type="start_conversation", userId="u")
    assert reply["success"] is True, reply
    return channel, session, str(reply["conversationId"])


# --- auth limiter: failed attempts only (spec section 2) -------------------------------------


async def test_successful_logins_do_not_use_up_the_auth_limit(make_service: Any) -> None:
    service = await make_service()
    for attempt in range(25):  # the origin refused the 11th
        channel, session = await open_session(service)
        reply = await command(channel, session, type="auth", apiKey="k")
        assert reply["success"] is True, (attempt, reply)
        assert channel.closed_with == []
        await session.closed()


async def test_failed_attempts_reach_the_limit_then_every_attempt_is_refused(
    make_service: Any,
) -> None:
    clock = Clock()
    service = await make_service(monotonic=clock)
    channel, session = await open_session(service)
    for _ in range(3):  # successes in between count for nothing
        assert (await command(channel, session, type="auth", apiKey="k"))["success"] is True
        await session.closed()
        channel, session = await open_session(service)
    for _ in range(10):
        reply = await command(channel, session, type="auth", apiKey="wrong")
        assert reply["error"] == "Invalid or inactive API key"
    # A malformed auth is a failed attempt too; over the limit even the right key is refused.
    refused = await command(channel, session, type="auth", apiKey="k")
    assert refused["type"] == "error"
    assert refused["error"] == "Too many authentication attempts, please try again later"
    assert channel.closed_with == [AUTH_RATE_LIMITED]
    # Another address is unaffected, and the window gives attempts back.
    other, other_session = await open_session(service, "192.0.2.99")
    assert (await command(other, other_session, type="auth", apiKey="k"))["success"] is True
    clock.now += 90.0  # 10 per 900 s: one attempt back every 90 s
    channel, session = await open_session(service)
    assert (await command(channel, session, type="auth", apiKey="k"))["success"] is True


# --- message rate, text bound ----------------------------------------------------------------


async def test_a_flood_of_large_text_inputs_is_closed_and_not_stored(make_service: Any) -> None:
    """150 x 1 MB ``send_user_text_input`` (the probe's flood): each is refused as too long, and
    the bucket (charged by size) runs empty after a dozen, closing with 4011."""
    service = await make_service(monotonic=Clock())
    channel, session, conversation_id = await started(service)
    await channel.wait_for(type="conversation_event", eventType="conversation_start")
    huge = json.dumps(
        {"type": "send_user_text_input", "conversationId": conversation_id, "text": "x" * 1_000_000}
    )
    for _ in range(150):
        await session.handle_message(huge)
    refusals = [m for m in channel.messages if m["type"] == "send_user_text_input"]
    assert refusals and all(
        m["error"] == "Invalid message: text: longer than 10000 characters" for m in refusals
    )
    # 200 tokens; a 1 MB message costs 1 + 15 (one per started 64 KiB past the first).
    assert len(refusals) == 200 // 16
    assert channel.messages[-1] == {"type": "error", "error": "Message rate exceeded"}
    assert channel.closed_with == [OVER_MESSAGE_RATE]
    conversation = service.running(conversation_id)
    assert conversation is not None
    assert all(len(m.content) < 1000 for m in conversation.history)


async def test_text_up_to_the_bound_is_taken_and_one_more_is_refused(make_service: Any) -> None:
    service = await make_service(session_limits=SessionLimits(max_text_input_chars=50))
    channel, session, conversation_id = await started(service)
    too_long = await command(
        channel,
        session,
        type="send_user_text_input",
        conversationId=conversation_id,
        text="hello " + "y" * 45,
    )
    assert too_long["success"] is False
    assert too_long["error"] == "Invalid message: text: longer than 50 characters"
    taken = await command(
        channel,
        session,
        type="send_user_text_input",
        conversationId=conversation_id,
        text="hello " + "y" * 44,
    )
    assert taken["success"] is True, taken
    answer = await channel.wait_for(type="end_ai_generation_output")
    assert answer["fullText"] == "Hi there."
    conversation = service.running(conversation_id)
    assert conversation is not None
    assert [m.content for m in conversation.history if m.role == "user"] == ["hello " + "y" * 44]


async def test_messages_within_the_rate_are_all_handled(make_service: Any) -> None:
    clock = Clock()
    service = await make_service(
        monotonic=clock, session_limits=SessionLimits(rate_per_s=10, rate_burst=5)
    )
    channel, session = await authenticated(service)  # 1 token
    for _ in range(4):
        reply = await command(
            channel, session, type="get_all_vars", conversationId="c", stageId="s"
        )
        assert reply["error"] == "No active conversation in this session"
    clock.now += 0.5  # 5 tokens back
    for _ in range(5):
        reply = await command(
            channel, session, type="get_all_vars", conversationId="c", stageId="s"
        )
        assert reply["error"] == "No active conversation in this session"
    assert channel.closed_with == []
    await session.handle_message('{"type": "auth"}')
    assert channel.messages[-1] == {"type": "error", "error": "Message rate exceeded"}
    assert channel.closed_with == [OVER_MESSAGE_RATE]
    # Nothing more is handled on a connection being closed.
    await session.handle_message('{"type": "auth", "apiKey": "k"}')
    assert channel.messages[-1] == {"type": "error", "error": "Message rate exceeded"}


# --- auth deadline ---------------------------------------------------------------------------


async def test_a_client_that_never_authenticates_is_closed_at_the_deadline(
    make_service: Any,
) -> None:
    service = await make_service(session_limits=SessionLimits(auth_timeout_s=0.2))
    lurker, lurker_session = await open_session(service)
    await lurker_session.handle_message('{"type": "get_var"}')  # not auth: no reprieve
    user, _ = await authenticated(service)
    timed_out = await lurker.wait_for(type="error", error="Authentication timed out")
    assert "requestId" not in timed_out
    assert lurker.closed_with == [AUTH_TIMEOUT]
    assert user.closed_with == []  # authenticated in time: the deadline is gone


# --- deep JSON -------------------------------------------------------------------------------


async def test_deep_json_is_invalid_json_and_the_session_goes_on(make_service: Any) -> None:
    service = await make_service()
    channel, session, conversation_id = await started(service)
    for depth in (65, 1_000, 100_000):
        deep = '{"type": "set_var", "requestId": "d", "variableValue": ' + "[" * depth
        await session.handle_message(deep + "]" * depth + "}")
        assert channel.messages[-1] == {"type": "error", "error": "Invalid JSON"}
    # 64 levels (the message itself is the first) are still taken, and the session works.
    value: Any = 1
    for _ in range(62):
        value = [value]
    reply = await command(
        channel,
        session,
        type="set_var",
        conversationId=conversation_id,
        stageId="s",
        variableName="deep",
        variableValue=value,
    )
    assert reply["success"] is True, reply
    read = await command(
        channel,
        session,
        type="get_var",
        conversationId=conversation_id,
        stageId="s",
        variableName="deep",
    )
    assert read["variableValue"] == value


# --- memory ----------------------------------------------------------------------------------


async def test_an_ended_conversation_is_let_go_while_the_session_lives(make_service: Any) -> None:
    service = await make_service()
    channel, session, conversation_id = await started(service)
    for n in range(20):
        reply = await command(
            channel,
            session,
            type="send_user_text_input",
            conversationId=conversation_id,
            text=f"hello {n} " + "z" * 9_000,
        )
        assert reply["success"] is True, reply
        await channel.wait_for(type="end_ai_generation_output")
    conversation = service.running(conversation_id)
    assert conversation is not None
    watched = weakref.ref(conversation)
    del conversation
    ended = await command(channel, session, type="end_conversation", conversationId=conversation_id)
    assert ended == {
        "type": "end_conversation",
        "requestId": ended["requestId"],
        "sessionId": session.id,
        "conversationId": conversation_id,
        "success": True,
    }
    gc.collect()
    assert watched() is None, gc.get_referrers(watched())
    # The session is still usable, and the ended conversation stays ended.
    again = await command(
        channel, session, type="resume_conversation", conversationId=conversation_id
    )
    assert again["error"] == "Conversation cannot be resumed: finished"
    fresh = await command(channel, session, type="start_conversation", userId="u")
    assert fresh["success"] is True


# --- variables -------------------------------------------------------------------------------


async def test_variables_set_by_the_client_are_bounded_in_size(make_service: Any) -> None:
    """By default a stage's variables stay within 1 MiB as JSON: ``set_var`` with ever new
    names cannot grow the conversation (and what is stored after every change) without bound."""
    service = await make_service()
    channel, session, conversation_id = await started(service)

    async def set_var(name: str, value: Any) -> dict[str, Any]:
        return await command(
            channel,
            session,
            type="set_var",
            conversationId=conversation_id,
            stageId="s",
            variableName=name,
            variableValue=value,
        )

    assert (await set_var("a", "x" * 600_000))["success"] is True
    refused = await set_var("b", "y" * 600_000)
    assert refused["success"] is False
    assert refused["error"] == (
        "Invalid message: variableValue: the stage's variables would exceed 1048576 bytes"
    )
    assert (await set_var("a", "small"))["success"] is True  # replacing shrinks them
    assert (await set_var("b", "y" * 600_000))["success"] is True
    everything = await command(
        channel, session, type="get_all_vars", conversationId=conversation_id, stageId="s"
    )
    assert everything["variables"] == {"a": "small", "b": "y" * 600_000}


async def test_initial_stage_variables_are_bounded_in_size(make_service: Any) -> None:
    service = await make_service(session_limits=SessionLimits(max_variables_bytes=100))
    channel, session = await authenticated(service)
    refused = await command(
        channel, session, type="start_conversation", userId="u", stageVariables={"v": "z" * 100}
    )
    assert refused["error"] == "Invalid message: stageVariables: more than 100 bytes"
    taken = await command(
        channel, session, type="start_conversation", userId="u", stageVariables={"v": "z" * 80}
    )
    assert taken["success"] is True, taken
