"""The conversation bus on two nodes sharing Redis (and a PostgreSQL store): the conversation
runs on one node, the official JS SDK watches it from the other, and the REST commands sent
to the other node are relayed to the one it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.client import ConversationClient
from tests.cluster.conftest import cluster_toml, js_client
from tests.conversation.bus_support import bus_toml, pushes, steer, watcher_token
from tests.conversation.lab_projects import REPO, write_projects
from tests.support.postgres import postgres_url
from tests.support.redis import SHARED_URL, delete_prefix, unique_prefix
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def bus_config(tmp_path: Path) -> AsyncIterator[str]:
    write_projects(tmp_path / "projects")
    prefix = unique_prefix()
    async for database_url in postgres_url():
        try:
            yield cluster_toml(SHARED_URL, prefix, apps_toml="") + bus_toml(
                tmp_path / "projects", database_url
            )
        finally:
            await delete_prefix(6379, prefix)


def node(toml: str) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    return running_server(toml, env={"PYTHONPATH": str(REPO)})


def is_event(kind: str) -> Any:
    return lambda m: m.get("type") == "conversation_event" and m.get("eventType") == kind


async def test_the_bus_and_rest_steering_across_two_nodes(tmp_path: Path) -> None:
    async with bus_config(tmp_path) as toml, contextlib.AsyncExitStack() as stack:
        a, b = await asyncio.gather(*(stack.enter_async_context(node(toml)) for _ in range(2)))
        async with await ConversationClient.connect(a.ws_url + "/ws") as client:
            await client.auth("lab-key")
            conversation_id = await client.start("user-on-a")
            channel = f"conversations/lab/{conversation_id}"
            token = watcher_token("supervisor", ["conversations/lab/*"])
            async with js_client(b, token=token) as watcher:
                assert (await watcher.command("subscribe", channel=channel))["event"] == "ack"
                before = len(pushes(client))

                await client.send_text("bump")
                assert (await client.next_turn()).text == "Counter is 1."
                # Every REST command goes to b, which relays it to a.
                status, said = await steer(b, conversation_id, "say", {"text": "From b."})
                assert (status, said["projectId"]) == (200, "lab")
                assert (await client.next_turn()).text == "From b."
                status, typed = await steer(b, conversation_id, "input", {"text": "bump"})
                assert status == 200 and typed["inputTurnId"].startswith("tinp_")
                assert (await client.next_turn()).text == "Counter is 2."
                status, moved = await steer(b, conversation_id, "stage", {"stageId": "other"})
                assert (status, moved["stageId"]) == (200, "other")
                assert (await client.next_turn()).text == "Welcome to the other stage."
                status, _ = await steer(b, conversation_id, "stage", {"stageId": "nowhere"})
                assert status == 400
                status, _ = await steer(b, conversation_id, "end")
                assert status == 200
                await client.wait_for(is_event("conversation_end"))

                await watcher.next(
                    "message",
                    lambda e: e["channel"] == channel and is_event("conversation_end")(e["data"]),
                )
                seen = [e["data"] for e in watcher.events if e["event"] == "message"]
                assert seen == pushes(client)[before : before + len(seen)]
                texts = [m["fullText"] for m in seen if m["type"] == "end_ai_generation_output"]
                assert texts == [
                    "Counter is 1.",
                    "From b.",
                    "Counter is 2.",
                    "Welcome to the other stage.",
                ]

            # Ended: both nodes say so (a from memory, b from the shared store).
            for target in (a, b):
                status, error = await steer(target, conversation_id, "say", {"text": "late"})
                assert (status, error["error"]) == (409, "conversation_ended")
        for target in (a, b):
            status, error = await steer(target, "conv_" + "0" * 32, "input", {"text": "x"})
            assert (status, error["error"]) == (404, "conversation_not_found")


async def test_a_conversation_whose_node_stopped_is_taken_up_where_the_command_lands(
    tmp_path: Path,
) -> None:
    async with bus_config(tmp_path) as toml, node(toml) as b:
        async with node(toml) as a, await ConversationClient.connect(a.ws_url + "/ws") as client:
            await client.auth("lab-key")
            conversation_id = await client.start("user-on-a")
            await client.send_text("bump")
            assert (await client.next_turn()).text == "Counter is 1."
        # a is gone; the conversation is resumable from the store, so b takes it up.
        status, typed = await steer(b, conversation_id, "input", {"text": "bump"})
        assert status == 200, typed
        async with await ConversationClient.connect(b.ws_url + "/ws") as again:
            await again.auth("lab-key")
            await again.resume(conversation_id)
            await again.send_text("bump")
            texts = [(await again.next_turn()).text]
            if texts[0] != "Counter is 3.":
                texts.append((await again.next_turn()).text)
            assert texts in (["Counter is 3."], ["Counter is 2.", "Counter is 3."])
