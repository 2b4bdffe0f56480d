"""The conversation bus on one node (memory broker): the official JS SDK watches a conversation's
channel and sees every push its client sees, and a backend steers it over REST; every bad
request gets its documented error and changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from hubbub.client import ConversationClient
from tests.cluster.conftest import JsClient, js_client
from tests.conversation.bus_support import bus_toml, pushes, steer, watcher_token
from tests.conversation.lab_projects import REPO, write_projects
from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    root = tmp_path_factory.mktemp("bus")
    write_projects(root / "projects")
    config = bus_toml(root / "projects", f"sqlite+aiosqlite:///{root / 'store.db'}")
    async with running_server(config, env={"PYTHONPATH": str(REPO)}) as process:
        yield process


async def started(server: ServerProcess, key: str = "lab-key") -> ConversationClient:
    client = await ConversationClient.connect(server.ws_url + "/ws")
    await client.auth(key)
    await client.start("user-1")
    return client


@contextlib.asynccontextmanager
async def watched(node: ServerProcess, channel: str) -> AsyncIterator[JsClient]:
    token = watcher_token("supervisor", ["conversations/**"])
    async with js_client(node, token=token) as watcher:
        ack = await watcher.command("subscribe", channel=channel)
        assert ack["event"] == "ack", ack
        yield watcher


async def bus_messages(watcher: JsClient, until: Any, channel: str) -> list[dict[str, Any]]:
    """The pushes the watcher received on ``channel`` up to the first that ``until`` accepts."""
    await watcher.next("message", lambda e: e["channel"] == channel and until(e["data"]))
    return [
        e["data"] for e in watcher.events if e["event"] == "message" and e["channel"] == channel
    ]


def ends_turn(message: dict[str, Any]) -> bool:
    return message.get("type") == "end_ai_generation_output"


def is_event(kind: str) -> Any:
    return lambda m: m.get("type") == "conversation_event" and m.get("eventType") == kind


async def test_a_watcher_sees_what_the_client_sees_and_a_backend_steers(
    server: ServerProcess,
) -> None:
    async with await started(server) as client:
        conversation_id = str(client.conversation_id)
        channel = f"conversations/lab/{conversation_id}"
        async with watched(server, channel) as watcher:
            before = len(pushes(client))
            await client.send_text("bump")
            assert (await client.next_turn()).text == "Counter is 1."
            seen = await bus_messages(watcher, ends_turn, channel)
            # Same JSON, sessionId aside (the client may have received more by now).
            assert seen == pushes(client)[before : before + len(seen)]
            [message] = [e for e in watcher.events if e["event"] == "message"][:1]
            assert message["from"] == "conversation"

            status, said = await steer(server, conversation_id, "say", {"text": "Hello, I am Ann."})
            assert status == 200, said
            assert said["projectId"] == "lab" and said["stageId"] == "intro"
            assert (await client.next_turn()).text == "Hello, I am Ann."

            status, typed = await steer(server, conversation_id, "input", {"text": "bump"})
            assert status == 200 and typed["inputTurnId"].startswith("tinp_")
            assert (await client.next_turn()).text == "Counter is 2."
            await client.wait_for(is_event("message"))

            status, moved = await steer(server, conversation_id, "stage", {"stageId": "other"})
            assert status == 200 and moved["stageId"] == "other"
            assert (await client.next_turn()).text == "Welcome to the other stage."

            status, ended = await steer(server, conversation_id, "end")
            assert status == 200, ended
            end = await client.wait_for(is_event("conversation_end"))
            assert end["eventData"]["reason"] == "ended by backend"
            seen = await bus_messages(watcher, is_event("conversation_end"), channel)
            assert seen == pushes(client)[before : before + len(seen)]
            texts = [m["fullText"] for m in seen if ends_turn(m)]
            assert texts == [
                "Counter is 1.",
                "Hello, I am Ann.",
                "Counter is 2.",
                "Welcome to the other stage.",
            ]

            status, refused = await steer(server, conversation_id, "say", {"text": "too late"})
            assert (status, refused["error"]) == (409, "conversation_ended")


async def test_say_interrupts_the_answer_being_spoken(server: ServerProcess) -> None:
    async with await started(server) as client:
        await client.send_text("story")
        start = await client.wait_type("start_ai_generation_output")
        await client.wait_type("ai_transcribed_chunk")
        status, _ = await steer(server, str(client.conversation_id), "say", {"text": "Stop."})
        assert status == 200
        aborted = await client.wait_type("abort_ai_generation_output")
        assert aborted["outputTurnId"] == start["outputTurnId"]
        assert (await client.next_turn()).text == "Stop."


async def test_a_watcher_outside_its_token_scope_is_refused(server: ServerProcess) -> None:
    async with await started(server) as client:
        channel = f"conversations/lab/{client.conversation_id}"
        token = watcher_token("desk-supervisor", ["conversations/support-desk/**"])
        async with js_client(server, token=token) as watcher:
            refused = await watcher.command("subscribe", channel=channel)
            assert refused["event"] == "error"
            assert refused["code"].startswith("channel_not_authorized")


BAD_BODIES = [
    ("say", None, b"", "invalid_request"),
    ("say", None, b"not json", "invalid_request"),
    ("say", None, b"[1]", "invalid_request"),
    ("say", {"text": ""}, None, "invalid_request"),
    ("say", {"text": "   "}, None, "invalid_request"),
    ("say", {"text": 5}, None, "invalid_request"),
    ("say", {"text": "hi", "voice": "x"}, None, "invalid_request"),
    ("say", {"text": "x" * 4097}, None, "invalid_request"),
    ("input", {}, None, "invalid_request"),
    ("input", {"message": "hi"}, None, "invalid_request"),
    ("stage", {"stage": "other"}, None, "invalid_request"),
    ("stage", {"stageId": ""}, None, "invalid_request"),
    ("stage", {"stageId": "nowhere"}, None, "stage_not_found"),
    ("end", {"reason": "x"}, None, "invalid_request"),
]


@pytest.mark.parametrize(("command", "body", "raw", "code"), BAD_BODIES)
async def test_bad_bodies_are_400_and_change_nothing(
    server: ServerProcess, command: str, body: Any, raw: bytes | None, code: str
) -> None:
    async with await started(server) as client:
        conversation_id = str(client.conversation_id)
        status, error = await steer(server, conversation_id, command, body, raw=raw)
        assert (status, error["error"]) == (400, code)
        assert set(error) == {"error", "message"}
        # Nothing happened, and the conversation still works.
        assert await client.command("get_var", stageId="intro", variableName="counter")
        await client.send_text("bump")
        assert (await client.next_turn()).text == "Counter is 1."


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("Bearer sk_id_demo:wrong", 401, "unauthorized"),
        ("Bearer sk_id_demo", 401, "unauthorized"),
        ("Bearer pk_live_demo", 401, "unauthorized"),
        ("Bearer sk_id_other:sk_secret_other", 403, "app_not_permitted"),
        ("Bearer sk_id_reader:sk_secret_reader", 403, "action_not_permitted"),
        ("Bearer sk_id_desk_only:sk_secret_desk_only", 403, "channel_not_authorized"),
    ],
)
async def test_credentials_are_checked(
    server: ServerProcess, authorization: str | None, status: int, code: str
) -> None:
    async with await started(server) as client:
        conversation_id = str(client.conversation_id)
        answer = await steer(
            server, conversation_id, "say", {"text": "x"}, authorization=authorization
        )
        assert (answer[0], answer[1]["error"]) == (status, code)
        # Nothing was said: the next turn is the answer to the client's own input.
        await client.send_text("bump")
        assert (await client.next_turn()).text == "Counter is 1."


@pytest.mark.parametrize(
    "conversation_id", ["conv_0123456789abcdef0123456789abcdef", "x" * 65, "conv_%09"]
)
async def test_unknown_conversations_are_404(server: ServerProcess, conversation_id: str) -> None:
    for command, body in (("say", {"text": "x"}), ("input", {"text": "x"}), ("end", None)):
        status, error = await steer(server, conversation_id, command, body)
        assert (status, error["error"]) == (404, "conversation_not_found")


async def test_a_conversation_of_a_project_the_bus_does_not_carry_is_404(
    server: ServerProcess,
) -> None:
    async with await started(server, "sleepy-key") as client:
        status, error = await steer(server, str(client.conversation_id), "say", {"text": "x"})
        assert (status, error["error"]) == (404, "conversation_not_found")


async def test_a_conversation_whose_client_left_is_steered(server: ServerProcess) -> None:
    async with await started(server) as client:
        conversation_id = str(client.conversation_id)
    # The client went away; the conversation waits on its node, and the backend can speak.
    status, said = await steer(server, conversation_id, "input", {"text": "bump"})
    assert status == 200, said
    async with await ConversationClient.connect(server.ws_url + "/ws") as again:
        await again.auth("lab-key")
        await again.resume(conversation_id)
        await again.send_text("bump")
        # The backend's input was taken first (its answer may reach this client or nobody).
        texts = [(await again.next_turn()).text]
        if texts[0] != "Counter is 2.":
            texts.append((await again.next_turn()).text)
        assert texts in (["Counter is 2."], ["Counter is 1.", "Counter is 2."])


async def test_a_pattern_subscription_watches_every_conversation_of_a_project(
    server: ServerProcess,
) -> None:
    token = watcher_token("floor-manager", ["conversations/lab/*"])
    async with js_client(server, token=token) as watcher:
        assert (await watcher.command("subscribe", channel="conversations/lab/*"))["event"] == "ack"
        async with await started(server) as first, await started(server) as second:
            for client in (first, second):
                await client.send_text("bump")
                assert (await client.next_turn()).text == "Counter is 1."
            for client in (first, second):
                channel = f"conversations/lab/{client.conversation_id}"
                ended = await watcher.next(
                    "message", lambda e, c=channel: e["channel"] == c and ends_turn(e["data"])
                )
                assert ended["data"]["fullText"] == "Counter is 1."
