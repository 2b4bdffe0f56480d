"""The conversation store on SQLite and PostgreSQL, and resuming across a server restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationRecord, ConversationStore, EventRecord
from hubbub.conversation.session.service import ConversationService
from tests.conversation.fakes import Clock, FakeChannel, command
from tests.conversation.lab_projects import LAB

# The PostgreSQL half talks to the machine's database service.
pytestmark = pytest.mark.integration

POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


async def _postgres_url() -> AsyncIterator[str]:
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hubbub_test_{uuid.uuid4().hex[:12]}"
    try:
        async with asyncio.timeout(5), admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, sa.exc.OperationalError, sa.exc.DBAPIError) as exc:
        await admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({type(exc).__name__})")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    async for url in _postgres_url():
        yield url


def record(conversation_id: str, status: str = "awaiting_user_input") -> ConversationRecord:
    return ConversationRecord(
        id=conversation_id,
        project_id="lab",
        user_id="u",
        agent_id=None,
        stage_id="intro",
        status=status,
        timezone="UTC",
        created_at=1.0,
        updated_at=2.0,
    )


async def test_round_trip(database_url: str) -> None:
    store = ConversationStore.from_url(database_url)
    await store.start()
    try:
        store.save_conversation(record("conv_a", "initialized"))
        store.save_conversation(record("conv_a"))  # an update, not a second row
        for seq in range(3):
            store.append_event(
                EventRecord(
                    id=f"evnt_{seq}",
                    conversation_id="conv_a",
                    seq=seq,
                    event_type="message",
                    data={"role": "user", "text": f"hi {seq}", "nested": {"n": [1, 2]}},
                    input_turn_id="tinp_1" if seq == 1 else None,
                    output_turn_id=None,
                    created_at=3.0,
                )
            )
        store.save_variables("conv_a", "intro", {"counter": 1, "note": "x"})
        store.save_variables("conv_a", "intro", {"counter": 2, "data": {"k": [True, None]}})
        store.save_variables("conv_a", "other", {"mood": "calm"})
        loaded = await store.load("conv_a")
        assert loaded is not None
        assert loaded.record == record("conv_a")
        assert [e.seq for e in loaded.events] == [0, 1, 2]
        assert loaded.events[1].input_turn_id == "tinp_1"
        assert loaded.events[2].data == {"role": "user", "text": "hi 2", "nested": {"n": [1, 2]}}
        assert loaded.variables == {
            "intro": {"counter": 2, "data": {"k": [True, None]}},
            "other": {"mood": "calm"},
        }
        assert await store.load("conv_missing") is None
    finally:
        await store.close()


async def new_service(url: str, clock: Clock) -> ConversationService:
    project = parse_project(LAB, "lab.yaml", TemplateRenderer())
    service = ConversationService(
        [project],
        ConversationStore.from_url(url),
        clock=clock,
        python_tools=frozenset({"tests.conversation.lab_tools:echo"}),
    )
    await service.start()
    return service


async def open_session(service: ConversationService) -> tuple[FakeChannel, Any]:
    channel = FakeChannel()
    session = service.open_session(channel)
    assert (await command(channel, session, type="auth", apiKey="lab-key"))["success"]
    return channel, session


async def test_resume_after_a_restart(database_url: str) -> None:
    clock = Clock()
    service = await new_service(database_url, clock)
    channel, session = await open_session(service)
    started = await command(channel, session, type="start_conversation", userId="u")
    conversation_id = started["conversationId"]
    await command(
        channel, session, type="send_user_text_input", conversationId=conversation_id, text="bump"
    )
    await channel.wait_for(type="end_ai_generation_output", fullText="Counter is 1.")
    ran = await command(
        channel,
        session,
        type="run_action",
        conversationId=conversation_id,
        actionName="use_echo",
        parameters={"word": "kept"},
    )
    assert ran["success"] is True
    await command(
        channel, session, type="go_to_stage", conversationId=conversation_id, stageId="other"
    )
    await channel.wait_for(type="end_ai_generation_output", fullText="Welcome to the other stage.")
    await session.closed()
    await service.stop()

    clock.now += 60
    service = await new_service(database_url, clock)
    try:
        channel, session = await open_session(service)
        reply = await command(
            channel, session, type="resume_conversation", conversationId=conversation_id
        )
        assert reply["success"] is True
        conversation = service.running(conversation_id)
        assert conversation is not None
        assert conversation.stage_id == "other"
        assert conversation.variables == {
            "intro": {"counter": 1, "note": None},
            "other": {"mood": "calm"},
        }
        assert [(m.role, m.content) for m in conversation.history] == [
            ("user", "bump"),
            ("assistant", "Counter is 1."),
            ("assistant", "Welcome to the other stage."),
        ]
        assert conversation.tool_results == {"echo": {"echo": "kept", "stage": "intro"}}
        event = await channel.wait_for(type="conversation_event", eventType="conversation_resume")
        assert event["eventData"] == {"stageId": "other", "previousStatus": "awaiting_user_input"}
        await command(channel, session, type="end_conversation", conversationId=conversation_id)
    finally:
        await session.closed()
        await service.stop()

    service = await new_service(database_url, clock)
    try:
        channel, session = await open_session(service)
        reply = await command(
            channel, session, type="resume_conversation", conversationId=conversation_id
        )
        assert reply["error"] == "Conversation cannot be resumed: finished"
    finally:
        await service.stop()


async def test_a_conversation_idle_past_its_timeout_is_aborted_on_resume(database_url: str) -> None:
    clock = Clock()
    service = await new_service(database_url, clock)
    channel, session = await open_session(service)
    conversation_id = (await command(channel, session, type="start_conversation", userId="u"))[
        "conversationId"
    ]
    await session.closed()
    await service.stop()

    clock.now += 1801  # the lab project keeps the default 30-minute timeout
    service = await new_service(database_url, clock)
    try:
        channel, session = await open_session(service)
        reply = await command(
            channel, session, type="resume_conversation", conversationId=conversation_id
        )
        assert reply["error"] == "Conversation cannot be resumed: aborted"
        stored = await service.store.load(conversation_id)
        assert stored is not None and stored.record.status == "aborted"
        assert stored.events[-1].event_type == "conversation_aborted"
    finally:
        await service.stop()
