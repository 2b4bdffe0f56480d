"""WebRTC sessions against a real ``hubbub serve`` (conversation spec section 11, issue 11):
deep JSON on ``control`` is ``Invalid JSON`` and the session goes on, the auth deadline closes
the channels, and on SIGTERM the channels and the peer connection close cleanly and promptly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conversation.lab_projects import REPO, server_config, write_projects
from tests.support.server import ServerProcess, running_server

from .conftest import TIMEOUT_S, Client

pytestmark = pytest.mark.integration


def config(root: Path, conversations: str = "") -> str:
    write_projects(root / "projects")
    toml = server_config(root / "projects", f"sqlite+aiosqlite:///{root / 'store.db'}")
    toml = toml.replace("[conversations]\n", "[conversations]\n" + conversations, 1)
    return toml + '\n[webrtc]\nstun_url = ""\n'


@pytest.fixture
async def lab_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with running_server(
        config(tmp_path, "auth_timeout_s = 1.0\n"), env={"PYTHONPATH": str(REPO)}
    ) as process:
        yield process


async def command(client: Client, message: dict[str, Any]) -> dict[str, Any]:
    request_id = f"req-{message['type']}-{time.monotonic_ns()}"
    client.send({**message, "requestId": request_id})
    while True:
        reply = await client.receive()
        if reply.get("requestId") == request_id:
            return reply


async def test_deep_json_on_control_is_invalid_json_and_the_session_goes_on(
    lab_server: ServerProcess, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(lab_server.http_url + "/api/webrtc/offer")
    client.control.send('{"type": "auth", "x": ' + "[" * 1000 + "]" * 1000 + "}")
    assert await client.receive() == {"type": "error", "error": "Invalid JSON"}
    auth = await command(client, {"type": "auth", "apiKey": "lab-key"})
    assert auth["success"] is True, auth
    started = await command(client, {"type": "start_conversation", "userId": "deep"})
    assert started["success"] is True
    assert "Traceback" not in lab_server.log_text()


async def test_a_client_that_never_authenticates_is_closed(
    lab_server: ServerProcess, clients: Callable[..., Client]
) -> None:
    lurker = clients()
    await lurker.connect(lab_server.http_url + "/api/webrtc/offer")
    user = clients()
    await user.connect(lab_server.http_url + "/api/webrtc/offer")
    assert (await command(user, {"type": "auth", "apiKey": "lab-key"}))["success"] is True
    assert await lurker.receive() == {"type": "error", "error": "Authentication timed out"}
    await asyncio.wait_for(lurker.control_closed.wait(), TIMEOUT_S)
    assert not user.control_closed.is_set()
    assert user.control.readyState == "open"


async def test_sigterm_closes_webrtc_sessions_promptly(
    tmp_path: Path, clients: Callable[..., Client]
) -> None:
    async with running_server(config(tmp_path), env={"PYTHONPATH": str(REPO)}) as server:
        client = clients()
        await client.connect(server.http_url + "/api/webrtc/offer")
        assert (await command(client, {"type": "auth", "apiKey": "lab-key"}))["success"]
        started_reply = await command(client, {"type": "start_conversation", "userId": "sig"})
        assert started_reply["success"] is True
        client.send(
            {
                "type": "send_user_text_input",
                "conversationId": started_reply["conversationId"],
                "text": "tell me a story",
            }
        )
        while (await client.receive())["type"] != "ai_transcribed_chunk":
            pass  # the answer is streaming
        started = time.monotonic()
        server.process.terminate()
        await asyncio.wait_for(client.control_closed.wait(), 5)
        # The live answer was ended (with the text produced so far) before the close.
        received = [message for kind, message in client.events if kind == "control"]
        aborted = [m for m in received if m["type"] == "abort_ai_generation_output"]
        assert len(aborted) == 1, received
        closed_after_s = time.monotonic() - started
        returncode = await asyncio.wait_for(server.process.wait(), 10)
        exited_after_s = time.monotonic() - started
        assert returncode == 0, server.log_text()
        assert closed_after_s < 3.0
        assert exited_after_s < 5.0
        assert "Traceback" not in server.log_text()
