"""The conversation store on SQLite and PostgreSQL, and resuming across a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationRecord, ConversationStore, EventRecord
from hubbub.conversation.session.service import ConversationService
from tests.conversation.fakes import Clock, FakeChannel, command
from tests.conversation.lab_projects import LAB
from tests.support.postgres import postgres_url

# The PostgreSQL half talks to the machine's database service.
pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    async for url in postgres_url():
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


def listed(
    conversation_id: str, project: str, status: str, created_at: float
) -> ConversationRecord:
    return ConversationRecord(
        id=conversation_id,
        project_id=project,
        user_id="u",
        agent_id=None,
        stage_id="intro",
        status=status,
        timezone="UTC",
        created_at=created_at,
        updated_at=created_at + 1,
    )


async def test_the_listing_reads_newest_first_with_filters_and_a_cursor(database_url: str) -> None:
    store = ConversationStore.from_url(database_url)
    await store.start()
    try:
        rows = [
            listed("conv_1", "desk", "finished", 10.0),
            listed("conv_2", "desk", "awaiting_user_input", 20.0),
            listed("conv_3", "lab", "aborted", 20.0),  # the same start time as conv_2
            listed("conv_4", "desk", "generating_response", 30.0),
        ]
        for row in rows:
            store.save_conversation(row)

        async def ids(**query: Any) -> list[str]:
            query.setdefault("project_ids", None)
            query.setdefault("statuses", None)
            query.setdefault("limit", 10)
            return [r.id for r in await store.list_records(**query)]

        assert await ids() == ["conv_4", "conv_3", "conv_2", "conv_1"]
        assert await ids(project_ids=frozenset({"desk"})) == ["conv_4", "conv_2", "conv_1"]
        assert await ids(project_ids=frozenset()) == []
        assert await ids(statuses={"finished", "aborted"}) == ["conv_3", "conv_1"]
        assert await ids(limit=2) == ["conv_4", "conv_3"]
        # The cursor breaks the tie on the start time by id, so no page repeats or skips one.
        assert await ids(limit=2, before=rows[2]) == ["conv_2", "conv_1"]
        assert await ids(before=rows[1]) == ["conv_1"]
        assert await ids(before=rows[0]) == []
        found = await store.record("conv_3")
        assert found == rows[2]
        assert await store.record("conv_none") is None
    finally:
        await store.close()


async def test_events_come_a_page_at_a_time_and_variables_by_stage(database_url: str) -> None:
    store = ConversationStore.from_url(database_url)
    await store.start()
    try:
        store.save_conversation(listed("conv_e", "lab", "finished", 1.0))
        for seq in range(5):
            store.append_event(
                EventRecord(f"evnt_{seq}", "conv_e", seq, "message", {"n": seq}, None, None, 2.0)
            )
        store.append_event(EventRecord("evnt_x", "conv_other", 0, "message", {}, None, None, 2.0))
        store.save_variables("conv_e", "intro", {"a": 1})
        store.save_variables("conv_e", "other", {"b": [1, 2]})
        first = await store.events_page("conv_e", after=None, limit=2)
        assert [(e.seq, e.data) for e in first] == [(0, {"n": 0}), (1, {"n": 1})]
        rest = await store.events_page("conv_e", after=1, limit=10)
        assert [e.seq for e in rest] == [2, 3, 4]
        assert await store.events_page("conv_e", after=4, limit=10) == []
        assert await store.events_page("conv_none", after=None, limit=10) == []
        assert await store.variables_of("conv_e") == {"intro": {"a": 1}, "other": {"b": [1, 2]}}
        assert await store.variables_of("conv_none") == {}
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


async def test_stores_starting_at_once_on_a_fresh_database_all_start(database_url: str) -> None:
    # A cluster's nodes start together on an empty database: they race to create the tables.
    stores = [ConversationStore.from_url(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        stores[0].save_conversation(record("conv_race"))
        await stores[0].flush()
        assert await stores[3].record("conv_race") == record("conv_race")  # one database
    finally:
        for store in stores:
            await store.close()
