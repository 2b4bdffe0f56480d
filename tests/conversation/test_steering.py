"""The conversation bus and its steering without sockets: a real node (memory broker), a real
conversation service on SQLite, the relay's answers, every refusal, and the bus's queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hubbub.conversation.project.loader import LoadedProject, parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol.pushes import ConversationEvent, VoiceChunk
from hubbub.conversation.runtime.engine import Conversation
from hubbub.conversation.runtime.states import State
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.session.bus import RealtimeBus
from hubbub.conversation.session.service import ConversationService
from hubbub.conversation.session.steering import (
    RELAY_TOPIC,
    Steering,
    SteerOutcome,
    SteerRequest,
    encode_request,
)
from hubbub.core.node import Node
from tests.conversation.fake_speech import FakeSpeech
from tests.conversation.fakes import FakeChannel, command
from tests.core.fakes import Hub

PROJECT = """
id: desk
apiKeys: [{key: k}]
startingStageId: s
stages:
  - id: s
    actions:
      - name: hello
        trigger: {keywords: [hello]}
        effects: [{type: generate_response, text: "Hi there."}]
  - id: t
"""
OTHER = PROJECT.replace("id: desk", "id: quiet").replace("key: k", "key: q")
ALL = ("**",)


class CountingPublisher:
    """The node's publish_event, with a signal after each one (so tests await, not poll)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.channels: list[str] = []
        self.types: list[str] = []
        self.changed = asyncio.Event()

    async def publish_event(self, app_id: str, channel: str, data: bytes, sender: str) -> int:
        reached = await self._node.publish_event(app_id, channel, data, sender)
        self.channels.append(channel)
        self.types.append(json.loads(data)["type"])
        self.changed.set()
        return reached

    async def wait_for_type(self, push_type: str) -> None:
        async with asyncio.timeout(5):
            while push_type not in self.types:
                self.changed.clear()
                await self.changed.wait()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.channels) < count:
                self.changed.clear()
                await self.changed.wait()


def projects() -> list[LoadedProject]:
    renderer = TemplateRenderer()
    return [parse_project(PROJECT, "desk.yaml", renderer), parse_project(OTHER, "q.yaml", renderer)]


class World:
    def __init__(self, hub: Hub, service: ConversationService, bus: RealtimeBus) -> None:
        self.hub = hub
        self.service = service
        self.bus = bus
        self.steering = Steering(service, bus, hub.node)
        hub.node.handle_relay(RELAY_TOPIC, self.steering.answer_relay)

    def start(self, project_id: str = "desk") -> Conversation:
        project = self.service.projects[project_id]
        conversation = self.service.create(
            project, user_id="u", stage_id="s", agent_id=None, timezone="UTC"
        )
        conversation.begin({})
        return conversation

    async def steer(self, conversation_id: str, kind: Any, **fields: Any) -> SteerOutcome:
        fields.setdefault("patterns", ALL)
        return await self.steering.steer(
            SteerRequest(conversation_id=conversation_id, kind=kind, **fields)
        )


async def world_on(database: Path) -> tuple[World, CountingPublisher]:
    hub = await Hub().start()
    publisher = CountingPublisher(hub.node)
    bus = RealtimeBus(publisher, "app", ["desk"])
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{database}")
    service = ConversationService(projects(), store, bus=bus)
    await service.start()
    return World(hub, service, bus), publisher


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[World, CountingPublisher]]:
    made, publisher = await world_on(tmp_path / "store.db")
    yield made, publisher
    await made.service.stop()
    await made.bus.close()


async def idle(conversation: Conversation) -> None:
    """Until the conversation's queued work has run."""
    await asyncio.wait_for(conversation.submit(lambda: asyncio.sleep(0)), 5)


async def test_pushes_reach_a_subscriber_of_the_bus_channel(
    world: tuple[World, CountingPublisher],
) -> None:
    w, publisher = world
    conversation = w.start()
    watcher = await w.hub.connect("watcher")
    await watcher.subscribe(f"conversations/desk/{conversation.id}")
    watcher.new_frames()
    assert (await w.steer(conversation.id, "input", text="hello")).status == "done"
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while not any(f["data"]["type"] == "end_ai_generation_output" for f in frames):
            publisher.changed.clear()
            frames += [f for f in watcher.new_frames() if f["type"] == "message"]
            if not any(f["data"]["type"] == "end_ai_generation_output" for f in frames):
                await publisher.changed.wait()
    ended = next(f["data"] for f in frames if f["data"]["type"] == "end_ai_generation_output")
    assert ended["fullText"] == "Hi there." and "sessionId" not in ended
    assert {f["from"] for f in frames} == {"conversation"}
    types = [f["data"]["type"] for f in frames]
    assert types.index("start_ai_generation_output") < types.index("end_ai_generation_output")


async def test_a_project_the_bus_does_not_carry_publishes_nothing_and_is_not_found(
    world: tuple[World, CountingPublisher],
) -> None:
    w, publisher = world
    quiet = w.start("quiet")
    await idle(quiet)
    assert not any(c.startswith("conversations/quiet/") for c in publisher.channels)
    assert (await w.steer(quiet.id, "say", text="x")).status == "not_found"


async def test_each_refusal(world: tuple[World, CountingPublisher]) -> None:
    w, _ = world
    conversation = w.start()
    await idle(conversation)
    outside = await w.steer(conversation.id, "say", text="x", patterns=("conversations/quiet/**",))
    assert (outside.status, outside.project_id) == ("not_authorized", "desk")
    assert (await w.steer(conversation.id, "say", text="x", patterns=("[",))).status == (
        "not_authorized"
    )
    assert (await w.steer(conversation.id, "stage", stage_id="nope")).status == "stage_not_found"
    assert (await w.steer("conv_unknown", "end")).status == "not_found"
    conversation.start_voice()  # the user is speaking: the agent may not, nor may text come in
    assert conversation.state is State.RECEIVING_USER_VOICE
    for kind in ("say", "input"):
        busy = await w.steer(conversation.id, kind, text="x")
        assert (busy.status, busy.state) == ("busy", "receiving_user_voice")
    assert conversation.state is State.RECEIVING_USER_VOICE  # nothing moved
    ended = await w.steer(conversation.id, "end")
    assert ended.status == "done"
    await asyncio.wait_for(conversation.submit(lambda: asyncio.sleep(0)), 5)
    assert conversation.state is State.FINISHED
    again = await w.steer(conversation.id, "say", text="x")
    assert (again.status, again.state) == ("ended", "finished")


async def test_the_relay_answers_only_for_conversations_running_here(
    world: tuple[World, CountingPublisher],
) -> None:
    w, _ = world
    conversation = w.start()
    assert w.steering.answer_relay(b"\xc1 not msgpack") is None
    assert w.steering.answer_relay(msgspec.msgpack.encode({"kind": "say"})) is None
    unknown = SteerRequest(conversation_id="conv_x", kind="say", text="x", patterns=ALL)
    assert w.steering.answer_relay(encode_request(unknown)) is None
    here = SteerRequest(conversation_id=conversation.id, kind="stage", stage_id="t", patterns=ALL)
    answer = w.steering.answer_relay(encode_request(here))
    assert answer is not None
    outcome = msgspec.msgpack.decode(answer, type=SteerOutcome)
    assert (outcome.status, outcome.stage_id, outcome.project_id) == ("done", "t", "desk")
    # Through the node: only the handler registered for the topic answers.
    assert await w.hub.node.relay("app", "another.topic", b"x") == []
    await idle(conversation)
    relayed = await w.hub.node.relay("app", RELAY_TOPIC, encode_request(here))
    assert [msgspec.msgpack.decode(a, type=SteerOutcome).status for a in relayed] == ["done"]


async def test_a_stored_conversation_is_resumed_by_the_node_the_command_reaches(
    tmp_path: Path,
) -> None:
    first, _ = await world_on(tmp_path / "shared.db")
    conversation = first.start()
    await idle(conversation)
    conversation_id = conversation.id
    await first.service.stop()  # its node goes down; the conversation stays resumable
    await first.bus.close()
    second, publisher = await world_on(tmp_path / "shared.db")
    try:
        outcome = await second.steer(conversation_id, "input", text="hello")
        assert outcome.status == "done" and outcome.input_turn_id.startswith("tinp_")
        resumed = second.service.running(conversation_id)
        assert resumed is not None
        await idle(resumed)
        await publisher.wait_for(1)
        assert f"conversations/desk/{conversation_id}" in publisher.channels
        assert resumed.history[-1].content == "Hi there."
    finally:
        await second.service.stop()
        await second.bus.close()


class GatedPublisher:
    """Holds every publication until released; fails the ones for channel 'fail'."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def publish_event(self, app_id: str, channel: str, data: bytes, sender: str) -> int:
        await self.gate.wait()
        if channel.endswith("/fail"):
            raise ConnectionError("broker down")
        self.published.append((channel, json.loads(data)))
        self.changed.set()
        return 1

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.published) < count:
                self.changed.clear()
                await self.changed.wait()


def event(conversation_id: str, seq: int) -> ConversationEvent:
    return ConversationEvent(
        conversation_id=conversation_id, event_type="e", event_data={"seq": seq}
    )


async def test_the_bus_keeps_order_drops_the_oldest_when_full_and_survives_failures() -> None:
    publisher = GatedPublisher()
    bus = RealtimeBus(publisher, "app", max_queued=3)
    try:
        bus.publish("p", event("c", 0))
        await asyncio.sleep(0)  # the worker takes #0 and waits at the gate with it
        for seq in range(1, 6):
            bus.publish("p", event("c", seq))
        bus.publish("p", event("fail", 6))
        bus.publish("p", event("c", 7))
        publisher.gate.set()
        await publisher.wait_for(3)
        seqs = [data["eventData"]["seq"] for _, data in publisher.published]
        assert seqs == [0, 5, 7]  # 1-4 were dropped (3 waiting at most), 6 failed
        assert (bus.dropped, bus.failed, bus.published) == (4, 1, 3)
        assert {channel for channel, _ in publisher.published} == {"conversations/p/c"}
    finally:
        await bus.close()


def test_the_bus_carries_the_projects_named_with_valid_channel_names() -> None:
    everyone = RealtimeBus(GatedPublisher(), "app")
    assert everyone.carries("desk") and everyone.carries("support-desk")
    for bad in ("a/b", "a*", "tab\there", "x" * 220):  # no channel can be named after them
        assert not everyone.carries(bad)
    some = RealtimeBus(GatedPublisher(), "app", ["desk"])
    assert some.carries("desk") and not some.carries("quiet")


VOICED = """
id: voiced
apiKeys: [{key: v}]
generateVoice: true
startingStageId: s
stages: [{id: s}]
"""


class VoiceChannel(FakeChannel):
    def __init__(self) -> None:
        super().__init__()
        self.voice: list[VoiceChunk] = []

    def send_voice(self, chunk: object) -> None:
        assert isinstance(chunk, VoiceChunk)
        self.voice.append(chunk)


async def test_say_is_voiced_when_the_session_hears_speech(tmp_path: Path) -> None:
    hub = await Hub().start()
    bus = RealtimeBus(hub.node, "app")
    project = parse_project(VOICED, "voiced.yaml", TemplateRenderer())
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'voiced.db'}")
    service = ConversationService(
        [project],
        store,
        bus=bus,
        speech=FakeSpeech(),  # type: ignore[arg-type]
    )
    await service.start()
    channel = VoiceChannel()
    session = service.open_session(channel)
    try:
        settings = {"receiveVoiceOutput": True}
        auth = await command(channel, session, type="auth", apiKey="v", sessionSettings=settings)
        assert auth["success"] is True, auth
        started = await command(channel, session, type="start_conversation", userId="u")
        steering = Steering(service, bus, hub.node)
        said = await steering.steer(
            SteerRequest(
                conversation_id=started["conversationId"], kind="say", text="Hello.", patterns=ALL
            )
        )
        assert said.status == "done"
        start = await channel.wait_for(type="start_ai_generation_output")
        assert start["expectVoice"] is True
        end = await channel.wait_for(type="end_ai_generation_output")
        assert end["fullText"] == "Hello."
        spoken = [c for c in channel.voice if c.output_turn_id == start["outputTurnId"]]
        assert spoken and any(c.audio for c in spoken)
    finally:
        await session.closed()
        await service.stop()
        await bus.close()


async def test_with_history_on_the_bus_channels_a_late_watcher_catches_up(
    tmp_path: Path,
) -> None:
    hub = await Hub(channels={"app": [("conversations/**", 100, 600)]}).start()
    publisher = CountingPublisher(hub.node)
    bus = RealtimeBus(publisher, "app")
    store = ConversationStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    service = ConversationService(projects(), store, bus=bus)
    await service.start()
    try:
        w = World(hub, service, bus)
        conversation = w.start()
        assert (await w.steer(conversation.id, "say", text="Logged for later.")).status == "done"
        await publisher.wait_for_type("end_ai_generation_output")
        late = await hub.connect("late-supervisor")
        await late.send(
            {
                "type": "subscribe",
                "channel": f"conversations/desk/{conversation.id}",
                "requestId": "r",
                "rewind": 100,
            }
        )
        frames = late.new_frames()
        assert frames[0]["type"] == "ack"
        replay = [f["data"] for f in frames if f["type"] == "message"]
        # Everything published up to the subscribe, in order, from the first push on.
        assert [f["offset"] for f in frames if f["type"] == "message"] == list(
            range(1, frames[0]["offset"] + 1)
        )
        assert replay[0]["type"] == "conversation_event"
        assert [m["fullText"] for m in replay if m["type"] == "end_ai_generation_output"] == [
            "Logged for later."
        ]
    finally:
        await service.stop()
        await bus.close()
