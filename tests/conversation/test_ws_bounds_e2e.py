"""``/ws`` abuse bounds and graceful shutdown against a real ``hubbub serve`` (conversation
spec section 11, issue 11): the per-IP upgrade limit, the auth deadline, the message rate (close
4011), deep JSON, and on SIGTERM a 1001 close after which the conversation resumes on a new
server over the same store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import aiohttp
import pytest

from hubbub.client import ConversationClient
from tests.conversation.lab_projects import REPO, server_config, write_projects
from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration]

BOUNDS = """[conversations]
connect_attempts_per_ip = 5
auth_timeout_s = 1.0
"""


def config(root: Path, extra: str = BOUNDS) -> str:
    write_projects(root / "projects")
    toml = server_config(root / "projects", f"sqlite+aiosqlite:///{root / 'store.db'}")
    return toml.replace("[conversations]\n", extra, 1)


async def connect(server: ServerProcess, ip: str) -> ConversationClient:
    return await ConversationClient.connect(server.ws_url + "/ws", headers={"X-Forwarded-For": ip})


async def upgrade_status(server: ServerProcess, ip: str) -> tuple[int, str]:
    headers = {
        "X-Forwarded-For": ip,
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.http_url + "/ws", headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_unauthenticated_sockets_are_bounded_per_ip_and_in_time(tmp_path: Path) -> None:
    async with running_server(config(tmp_path), env={"PYTHONPATH": str(REPO)}) as server:
        lurkers = [await connect(server, "198.51.100.5") for _ in range(5)]
        for _ in range(3):
            status, body = await upgrade_status(server, "198.51.100.5")
            assert status == 429
            assert body == '{"error": "Too many connection attempts from this address"}'
        # Another address is not affected; it authenticates and outlives the deadline.
        async with await connect(server, "198.51.100.6") as user:
            assert (await user.auth("lab-key"))["success"] is True
            started = time.monotonic()
            for lurker in lurkers:
                await lurker.wait_closed(timeout_s=5)
                assert lurker.close_code == 1008
                assert lurker.log == [{"type": "error", "error": "Authentication timed out"}]
                await lurker.close()
            assert time.monotonic() - started < 3.0
            assert not user.closed
            assert (await user.request("auth", check=False, apiKey="lab-key"))[
                "error"
            ] == "Already authenticated"


async def test_a_flood_of_large_messages_is_closed_with_4011(tmp_path: Path) -> None:
    # A slow refill, so that what the bucket allows does not depend on the machine's speed:
    # 200 tokens, 16 per 1 MB message, so the 13th closes the connection.
    toml = config(tmp_path, "[conversations]\nrate_per_second = 0.01\n")
    async with running_server(toml, env={"PYTHONPATH": str(REPO)}) as server:
        store = tmp_path / "store.db"
        async with (
            await connect(server, "198.51.100.7") as flooder,
            await connect(server, "198.51.100.8") as bystander,
        ):
            await flooder.auth("lab-key")
            conversation_id = await flooder.start("flooder")
            await bystander.auth("lab-key")
            size_before = os.path.getsize(store)
            # Each message waits for its answer, so that the client is not writing when the
            # server closes (a close under a write flood is the outbox's business).
            sent = 0
            with contextlib.suppress(ConnectionError):
                while sent < 40:
                    sent += 1
                    await flooder.request(
                        "send_user_text_input",
                        check=False,
                        conversationId=conversation_id,
                        text="x" * 1_000_000,
                    )
            assert sent == 13
            await flooder.wait_closed(timeout_s=10)
            assert flooder.close_code == 4011
            assert {"type": "error", "error": "Message rate exceeded"} in flooder.log
            refused = [m for m in flooder.log if m["type"] == "send_user_text_input"]
            assert refused and {m["error"] for m in refused} == {
                "Invalid message: text: longer than 10000 characters"
            }
            assert os.path.getsize(store) - size_before < 1_000_000
            # The other client is untouched, and so is the flooder's conversation.
            conversation = await bystander.resume(conversation_id)
            assert conversation["success"] is True


async def test_deep_json_is_invalid_json_on_the_socket(tmp_path: Path) -> None:
    toml = config(tmp_path, "[conversations]\n")
    async with running_server(toml, env={"PYTHONPATH": str(REPO)}) as server:
        async with await connect(server, "198.51.100.9") as client:
            await client.send_raw('{"type": "auth", "x": ' + "[" * 1000 + "]" * 1000 + "}")
            assert (await client.wait_type("error"))["error"] == "Invalid JSON"
            assert (await client.auth("lab-key"))["success"] is True
        assert "Traceback" not in server.log_text()


async def test_sigterm_closes_sessions_with_1001_and_the_conversation_resumes(
    tmp_path: Path,
) -> None:
    toml = config(tmp_path, "[conversations]\n")
    env = {"PYTHONPATH": str(REPO)}
    async with running_server(toml, env=env) as server:
        client = await connect(server, "198.51.100.10")
        await client.auth("lab-key")
        conversation_id = await client.start("shutdown-user")
        await client.send_text("tell me a story")
        await client.wait_type("ai_transcribed_chunk")  # the answer is streaming
        started = time.monotonic()
        server.process.terminate()
        await client.wait_closed(timeout_s=5)
        closed_after_s = time.monotonic() - started
        assert client.close_code == 1001
        # The live answer was ended (with the text produced so far) before the close.
        aborted = [m for m in client.log if m["type"] == "abort_ai_generation_output"]
        assert len(aborted) == 1, client.log
        assert aborted[0]["accumulatedText"]
        returncode = await asyncio.wait_for(server.process.wait(), 10)
        exited_after_s = time.monotonic() - started
        await client.close()
        assert returncode == 0, server.log_text()
        assert closed_after_s < 3.0
        assert exited_after_s < 5.0
        assert "Traceback" not in server.log_text()
    async with (
        running_server(toml, env=env) as again,
        await connect(again, "198.51.100.11") as client,
    ):
        await client.auth("lab-key")
        resumed = await client.resume(conversation_id)
        assert resumed["success"] is True
        event = await client.wait_for(
            lambda m: m.get("eventType") == "conversation_resume", timeout_s=10
        )
        assert event["eventData"]["previousStatus"] in ("awaiting_user_input",)
