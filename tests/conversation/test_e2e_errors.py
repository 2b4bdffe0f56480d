"""Every documented error text of the conversation protocol, over a real WebSocket, and that
the connection (and every other one) survives it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from hubbub.client import ConversationClient
from tests.conversation.lab_projects import REPO, server_config, write_projects
from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

_addresses = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    root = tmp_path_factory.mktemp("conversation-errors")
    write_projects(root / "projects")
    config = server_config(root / "projects", f"sqlite+aiosqlite:///{root / 'store.db'}")
    async with running_server(config, env={"PYTHONPATH": str(REPO)}) as process:
        yield process


async def connect(server: ServerProcess, ip: str | None = None) -> ConversationClient:
    address = ip or f"2001:db8:e::{next(_addresses):x}"
    return await ConversationClient.connect(
        server.ws_url + "/ws", headers={"X-Forwarded-For": address}
    )


async def still_works(client: ConversationClient) -> None:
    """The connection survived: a command still gets its normal reply."""
    reply = await client.request("auth", check=False, apiKey="lab-key")
    assert reply["type"] == "auth"


async def transport_error(client: ConversationClient, raw: str) -> dict[str, Any]:
    await client.send_raw(raw)
    return await client.wait_type("error")


async def test_transport_errors(server: ServerProcess) -> None:
    async with await connect(server) as client:
        assert (await transport_error(client, "{nope"))["error"] == "Invalid JSON"
        assert (await transport_error(client, "[1, 2]"))["error"] == "Invalid JSON"
        unknown = await transport_error(client, '{"type": "dance", "requestId": "r1"}')
        assert unknown == {"type": "error", "requestId": "r1", "error": "Unknown message type"}
        assert (await transport_error(client, '{"requestId": "r2"}'))[
            "error"
        ] == "Unknown message type"
        required = await client.request("start_conversation", check=False, userId="u")
        assert required["type"] == "error"
        assert required["error"] == "Authentication required"
        await client.auth("lab-key")
        bad = await client.request("start_conversation", check=False, userId=5)
        assert bad["error"] == "Invalid message: userId: Expected `str`, got `int`"
        missing = await client.request("start_conversation", check=False)
        assert missing["error"] == "Invalid message: userId: required field missing"
        wrong_session = await client.request(
            "start_conversation", check=False, userId="u", sessionId="sess_other"
        )
        assert wrong_session["error"] == "Invalid message: sessionId: does not match this session"
        # Unknown fields are ignored.
        reply = await client.request("start_conversation", userId="u", colour="blue")
        assert reply["success"] is True


async def test_auth_failures(server: ServerProcess) -> None:
    async with await connect(server) as client:
        cases = [
            ({"apiKey": "nope"}, "Invalid or inactive API key"),
            ({"apiKey": "lab-inactive"}, "Invalid or inactive API key"),
            (
                {"apiKey": "lab-webrtc-only"},
                "Connection type 'websocket' is not permitted by this API key",
            ),
            (
                {"apiKey": "lab-minimal", "sessionSettings": {"receiveVoiceOutput": True}},
                "API key does not permit voice output",
            ),
            (
                {"apiKey": "lab-minimal", "sessionSettings": {"receiveTranscriptionUpdates": True}},
                "API key does not permit text output",
            ),
            (
                {"apiKey": "lab-minimal", "sessionSettings": {"receiveEvents": True}},
                "API key does not permit conversation events",
            ),
        ]
        for fields, text in cases:
            reply = await client.request("auth", check=False, **fields)
            assert reply["type"] == "auth" and reply["success"] is False
            assert reply["error"] == text
        await client.auth("lab-key")
        again = await client.request("auth", check=False, apiKey="lab-key")
        assert again["error"] == "Already authenticated"


async def test_feature_restrictions(server: ServerProcess) -> None:
    async with await connect(server) as client:
        await client.auth("lab-minimal")
        await client.start("u")
        for command, fields, feature in [
            ("send_user_text_input", {"text": "hi"}, "text_input"),
            ("start_user_voice_input", {}, "voice_input"),
            ("go_to_stage", {"stageId": "other"}, "stage_control"),
            ("get_all_vars", {"stageId": "intro"}, "vars_access"),
            ("run_action", {"actionName": "bump"}, "run_action"),
            ("call_tool", {"toolId": "echo"}, "call_tool"),
        ]:
            reply = await client.command(command, check=False, **fields)
            assert reply["type"] == "error"
            assert reply["error"] == f"Feature '{feature}' is not permitted by this API key"
        # Without text_output and events the session gets the turn, but no chunks or events.
        await client.command("end_conversation")
        assert not any(
            m["type"] in ("conversation_event", "ai_transcribed_chunk") for m in client.log
        )


async def test_session_settings_filter_and_disable(server: ServerProcess) -> None:
    async with await connect(server) as client:
        await client.auth(
            "lab-key",
            sendTextInput=False,
            receiveEvents=False,
            receiveTranscriptionUpdates=False,
        )
        await client.start("u")
        refused = await client.command("send_user_text_input", check=False, text="bump")
        assert refused["error"] == "Text input is disabled for this session"
        await client.command("go_to_stage", stageId="other")
        turn = await client.next_turn()
        assert turn.text == "Welcome to the other stage." and turn.chunks == []
        assert not any(m["type"] == "conversation_event" for m in client.log)


async def test_conversation_errors(server: ServerProcess) -> None:
    async with await connect(server) as client:
        await client.auth("lab-key")
        none = await client.request(
            "send_user_text_input", check=False, conversationId="conv_x", text="hi"
        )
        assert none["error"] == "No active conversation in this session"
        assert none["type"] == "send_user_text_input" and none["success"] is False
        stage = await client.request("start_conversation", check=False, userId="u", stageId="attic")
        assert stage["error"] == "Stage not found"
        agent = await client.request("start_conversation", check=False, userId="u", agentId="zed")
        assert agent["error"] == "Agent not found"
        zone = await client.request(
            "start_conversation", check=False, userId="u", timezone="Mars/Base"
        )
        assert zone["error"] == "Invalid message: timezone: unknown IANA time zone"
        await client.start("u", timezone="Europe/Paris")
        active = await client.request("start_conversation", check=False, userId="u")
        assert active["error"] == "A conversation is already active in this session"
        other = await client.request(
            "resume_conversation", check=False, conversationId="conv_other"
        )
        assert other["error"] == "A conversation is already active in this session"
        mismatch = await client.request(
            "send_user_text_input", check=False, conversationId="conv_other", text="hi"
        )
        assert mismatch["error"] == "Conversation ID mismatch"
        for command, fields in [
            ("start_user_voice_input", {}),
            ("send_user_voice_chunk", {"inputTurnId": "tinp_x", "audioData": "AAAA", "ordinal": 0}),
            ("end_user_voice_input", {"inputTurnId": "tinp_x"}),
        ]:
            voice = await client.command(command, check=False, **fields)
            assert voice["error"] == "Voice input is disabled for this session"
        stage_mismatch = await client.command(
            "set_var", check=False, stageId="other", variableName="x", variableValue=1
        )
        assert stage_mismatch["error"] == "Stage ID mismatch: expected intro, got other"
        # A slow tool keeps the conversation in processing_user_input: input is refused there.
        await client.send_text("nap")
        busy = await client.command("send_user_text_input", check=False, text="hello?")
        assert busy["error"] == "Cannot receive user input in current state: processing_user_input"
        await client.wait_for(lambda m: m.get("eventType") == "tool_call", timeout_s=10)
        await still_works(client)


async def test_too_many_auth_attempts(server: ServerProcess) -> None:
    address = "198.51.100.77"
    for _ in range(2):
        async with await connect(server, address) as client:
            for _ in range(5):
                reply = await client.request("auth", check=False, apiKey="wrong")
                assert reply["error"] == "Invalid or inactive API key"
    async with await connect(server, address) as client:
        reply = await client.request("auth", check=False, apiKey="lab-key")
        assert reply == {
            "type": "error",
            "requestId": reply["requestId"],
            "error": "Too many authentication attempts, please try again later",
        }
        await client.wait_closed(timeout_s=5)
        assert client.close_code == 1008
    # Other addresses are unaffected.
    async with await connect(server) as other:
        assert (await other.auth("lab-key"))["success"] is True


async def test_forwarded_for_is_ignored_without_a_trusted_proxy() -> None:
    """Demo mode trusts no proxy: rotating X-Forwarded-For does not dodge the per-IP limit."""
    async with running_server(None) as demo:
        for attempt in range(10):
            async with await connect(demo, f"192.0.2.{attempt + 1}") as client:
                reply = await client.request("auth", check=False, apiKey="wrong")
                assert reply["error"] == "Invalid or inactive API key"
        async with await connect(demo, "192.0.2.200") as client:
            reply = await client.request("auth", check=False, apiKey="demo-conversation-key")
            assert reply["error"] == "Too many authentication attempts, please try again later"
            await client.wait_closed(timeout_s=5)
