"""End to end over a real WebSocket: the support-desk demo and the lab projects on a real
``hubbub serve``; every client is the package's own :class:`ConversationClient`."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from hubbub.client import ConversationClient
from hubbub.conversation.voice.providers.registry import voice_available
from tests.conversation.lab_projects import REPO, STORY, server_config, write_projects
from tests.support.fake_openai import FakeOpenAi, Reply
from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

_addresses = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake_llm() -> AsyncIterator[FakeOpenAi]:
    async with FakeOpenAi(replies=[Reply.text(["Hello", " from", " the", " LLM."])]) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAi
) -> AsyncIterator[ServerProcess]:
    root = tmp_path_factory.mktemp("conversations")
    write_projects(root / "projects", llm_base_url=fake_llm.base_url)
    config = server_config(root / "projects", f"sqlite+aiosqlite:///{root / 'store.db'}")
    async with running_server(config, env={"PYTHONPATH": str(REPO)}) as process:
        yield process


async def connect(server: ServerProcess, ip: str | None = None) -> ConversationClient:
    """Each client comes from its own address (through the trusted loopback proxy), so the
    per-IP auth limit of one test never touches another."""
    address = ip or f"2001:db8::{next(_addresses):x}"
    return await ConversationClient.connect(
        server.ws_url + "/ws", headers={"X-Forwarded-For": address}
    )


async def started(
    server: ServerProcess, key: str = "demo-conversation-key", **start: Any
) -> ConversationClient:
    client = await connect(server)
    await client.auth(key)
    await client.start("user-1", **start)
    return client


def events(client: ConversationClient, event_type: str) -> list[dict[str, Any]]:
    return [
        m["eventData"]
        for m in client.log
        if m.get("type") == "conversation_event" and m.get("eventType") == event_type
    ]


async def say(client: ConversationClient, text: str) -> str:
    await client.send_text(text)
    turn = await client.next_turn()
    assert turn.completed
    return turn.text


# --- the support desk -----------------------------------------------------------------------


async def test_full_support_desk_path(server: ServerProcess) -> None:
    async with await connect(server) as client:
        auth = await client.auth("demo-conversation-key")
        assert auth["success"] is True
        assert auth["sessionId"].startswith("sess_")
        # The demo takes and speaks voice when the `voice` extra is installed (tests/voice_e2e).
        voice = voice_available()
        assert auth["projectSettings"] == {
            "projectId": "support-desk",
            "acceptVoice": voice,
            "generateVoice": voice,
            "asrConfig": auth["projectSettings"]["asrConfig"] if voice else None,
        }
        conversation_id = await client.start("customer-7")
        assert conversation_id.startswith("conv_")
        # The reply comes first, then the greeting streams as an AI turn.
        types = [m["type"] for m in client.log]
        assert types[:2] == ["auth", "start_conversation"]
        greeting = await client.next_turn()
        assert greeting.text.startswith("Hi, welcome to Acme Gadgets support!")
        assert "".join(greeting.chunks) == greeting.text
        assert greeting.output_turn_id.startswith("tout_")

        assert "order number" in await say(client, "where is my package?")
        status = await say(client, "sure, it's 1001")
        assert "Order 1001, your noise-cancelling headphones, is shipped" in status
        assert "expected Thursday" in status
        tool_calls = events(client, "tool_call")
        assert tool_calls[-1]["toolId"] == "order_status"
        assert tool_calls[-1]["result"]["data"]["status"] == "shipped"
        jumps = events(client, "jump_to_stage")
        assert jumps == [{"fromStageId": "greeting", "toStageId": "order_status"}]
        variables = await client.command("get_all_vars", stageId="order_status")
        assert variables["variables"] == {"order_status": "shipped"}

        assert "not turning on" in await say(client, "my headphones are broken")
        assert "Hold the power button" in await say(client, "they won't turn on")
        goodbye = await say(client, "yes, that helped")
        assert goodbye.endswith("Goodbye!")
        end = await client.wait_for(lambda m: m.get("eventType") == "conversation_end", timeout_s=5)
        assert end["eventData"] == {"reason": "resolved", "stageId": "troubleshooting"}
        refused = await client.command("send_user_text_input", check=False, text="hello?")
        assert refused["error"] == "No active conversation in this session"


async def test_unknown_order_and_fallback(server: ServerProcess) -> None:
    async with await started(server) as client:
        await client.next_turn()
        assert "I can check an order if you give me its number" in await say(client, "hmm")
        assert "I could not find order 9999" in await say(client, "9999")
        assert events(client, "tool_call")[-1]["result"]["status"] == 404


async def test_message_events_carry_timing(server: ServerProcess) -> None:
    async with await started(server) as client:
        await client.next_turn()
        turn_id = await client.send_text("where is my order")
        turn = await client.next_turn()
        user = next(
            m
            for m in client.log
            if m.get("eventType") == "message" and m.get("inputTurnId") == turn_id
        )
        assert user["eventData"]["role"] == "user"
        assert user["eventData"]["processingDurationMs"] >= 0
        assert "asrDurationMs" in user["eventData"]
        assistant = await client.wait_for(
            lambda m: (
                m.get("eventType") == "message" and m.get("outputTurnId") == turn.output_turn_id
            )
        )
        data = assistant["eventData"]
        assert data["role"] == "assistant" and data["text"] == turn.text
        for key in ("timeToFirstTokenMs", "totalTurnDurationMs"):
            assert data[key] >= 0
        for key in ("timeToFirstAudioMs", "llmDurationMs", "ttsDurationMs"):
            assert key in data

    # The same figures are exported as metrics (spec section 10).
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.http_url}/metrics") as response,
    ):
        text = await response.text()
    counts = [
        line
        for line in text.splitlines()
        if line.startswith("hubbub_conversation_time_to_first_token_seconds_count")
    ]
    assert counts and float(counts[0].split()[-1]) >= 2  # the greeting and this answer


# --- variables, stages, actions, tools ------------------------------------------------------


async def test_variables_and_watches(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        assert (await client.command("get_var", stageId="intro", variableName="counter"))[
            "variableValue"
        ] == 0
        assert await say(client, "bump") == "Counter is 1."
        assert await say(client, "bump please") == "Counter is 2."
        assert await say(client, "tell me the secret") == "The secret is 42."
        reply = await client.command(
            "set_var", stageId="intro", variableName="note", variableValue="milk"
        )
        assert reply["type"] == "set_var" and reply["success"] is True
        assert (await client.next_turn()).text == "Noted milk."
        all_vars = await client.command("get_all_vars", stageId="intro")
        assert all_vars["variables"] == {"counter": 2, "note": "milk"}
        changes = events(client, "variables_changed")
        assert {"stageId": "intro", "changes": {"note": "milk"}} in changes
        mismatch = await client.command(
            "get_var", check=False, stageId="other", variableName="counter"
        )
        assert mismatch["error"] == "Stage ID mismatch: expected intro, got other"
        missing = await client.command("get_var", stageId="intro", variableName="nothing")
        assert missing["variableValue"] is None


async def test_condition_blocks_an_action(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        # counter is 0: "gated" does not run, so the fallback answers.
        assert "did not understand" in await say(client, "secret")


async def test_stage_jumps(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        reply = await client.command("go_to_stage", stageId="other")
        assert reply["success"] is True
        assert (await client.next_turn()).text == "Welcome to the other stage."
        assert (await client.command("get_all_vars", stageId="other"))["variables"] == {
            "mood": "calm"
        }
        refused = await client.command("go_to_stage", check=False, stageId="attic")
        assert refused["error"] == "Stage not found"
        await client.command("go_to_stage", stageId="intro")
        assert await say(client, "jump") == "Welcome to the other stage."
        assert events(client, "jump_to_stage")[-1] == {"fromStageId": "intro", "toStageId": "other"}


async def test_run_action_and_call_tool(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        result = await client.command(
            "run_action", actionName="use_echo", parameters={"word": "hey"}
        )
        assert result["result"] == [
            {"contentType": "text", "text": '{"echo":"hey","stage":"intro"}'}
        ]
        assert events(client, "action")[-1] == {"name": "use_echo", "parameters": {"word": "hey"}}
        called = await client.command("call_tool", toolId="echo", parameters={"word": "yo"})
        assert called["result"][0]["text"] == '{"echo":"yo","stage":"intro"}'
        assert events(client, "tool_call")[-1]["toolId"] == "echo"
        for tool, reason in [
            ("forbidden", "is not allowed by the server configuration"),
            ("explode", "python tool explode failed: RuntimeError"),
            ("unreachable", "webhook unreachable:"),
        ]:
            failed = await client.command("call_tool", check=False, toolId=tool, parameters={})
            assert failed["success"] is False
            assert failed["error"].startswith("Tool failed: ") and reason in failed["error"]
            assert "secret internals" not in failed["error"]
        unknown = await client.command("call_tool", check=False, toolId="nope", parameters={})
        assert unknown["error"] == "Tool not found"
        unknown = await client.command("run_action", check=False, actionName="nope", parameters={})
        assert unknown["error"] == "Action not found"


async def test_demo_webhook_through_call_tool(server: ServerProcess) -> None:
    async with await started(server) as client:
        reply = await client.command(
            "call_tool", toolId="order_status", parameters={"orderId": "1004"}
        )
        assert '"status":"delayed"' in reply["result"][0]["text"]


async def test_end_conversation_effects_run_in_priority_order(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        await client.send_text("finish")
        assert (await client.next_turn()).text == "Bye."
        await client.wait_for(lambda m: m.get("eventType") == "conversation_end")
        # A finished conversation frees the session for a new one.
        assert (await client.start("user-1")).startswith("conv_")


async def test_client_ends_a_conversation(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        reply = await client.command("end_conversation")
        assert reply["success"] is True
        assert events(client, "conversation_end") == [
            {"reason": "ended by client", "stageId": "intro"}
        ]
        refused = await client.command("end_conversation", check=False)
        assert refused["error"] == "No active conversation in this session"


# --- barge-in -------------------------------------------------------------------------------


async def test_barge_in_with_new_input(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        await client.send_text("tell me a story")
        start = await client.wait_type("start_ai_generation_output")
        await client.wait_type("ai_transcribed_chunk")
        await client.wait_type("ai_transcribed_chunk")
        assert await client.send_text("bump")
        aborted = await client.wait_type("abort_ai_generation_output")
        assert aborted["outputTurnId"] == start["outputTurnId"]
        partial = aborted["accumulatedText"]
        assert partial and STORY.startswith(partial) and partial != STORY
        sent = "".join(
            m["chunkText"]
            for m in client.log
            if m.get("type") == "ai_transcribed_chunk"
            and m["outputTurnId"] == start["outputTurnId"]
        )
        assert sent == partial
        assert (await client.next_turn()).text == "Counter is 1."
        stored = [e for e in events(client, "message") if e["role"] == "assistant"]
        assert stored[0]["text"] == partial


async def test_abort_ai_generation(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        await client.send_text("story time")
        await client.wait_type("ai_transcribed_chunk")
        reply = await client.command("abort_ai_generation")
        assert reply["success"] is True
        aborted = next(m for m in client.log if m.get("type") == "abort_ai_generation_output")
        assert STORY.startswith(aborted["accumulatedText"])
        assert not any(m.get("type") == "end_ai_generation_output" for m in client.log)
        # Nothing is speaking now: aborting again is harmless, and input works.
        await client.command("abort_ai_generation")
        assert await say(client, "bump") == "Counter is 1."


# --- resume ---------------------------------------------------------------------------------


async def test_resume_after_reconnect(server: ServerProcess) -> None:
    client = await started(server)
    await client.next_turn()
    await say(client, "1002")
    conversation_id = client.conversation_id
    assert conversation_id is not None
    await client.close()

    async with await connect(server) as again:
        await again.auth("demo-conversation-key")
        reply = await again.resume(conversation_id)
        assert reply["success"] is True and reply["conversationId"] == conversation_id
        resumed = await again.wait_for(lambda m: m.get("eventType") == "conversation_resume")
        assert resumed["eventData"] == {
            "stageId": "order_status",
            "previousStatus": "awaiting_user_input",
        }
        variables = await again.command("get_all_vars", stageId="order_status")
        assert variables["variables"] == {"order_status": "processing"}
        assert "not turning on" in await say(again, "my keyboard is broken")


async def test_resume_errors(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        first = client.conversation_id
        await client.command("end_conversation")
        async with await connect(server) as other:
            await other.auth("lab-key")
            gone = await other.request("resume_conversation", check=False, conversationId=first)
            assert gone["error"] == "Conversation cannot be resumed: finished"
            unknown = await other.request(
                "resume_conversation", check=False, conversationId="conv_nope"
            )
            assert unknown["error"] == "Conversation not found"
        async with await connect(server) as stranger:
            await stranger.auth("demo-conversation-key")
            foreign = await stranger.request(
                "resume_conversation", check=False, conversationId=first
            )
            assert foreign["error"] == "Conversation not found"


async def test_idle_conversations_are_aborted(server: ServerProcess) -> None:
    async with await started(server, "sleepy-key") as client:
        aborted = await client.wait_for(
            lambda m: m.get("eventType") == "conversation_aborted", timeout_s=10
        )
        assert aborted["eventData"] == {"reason": "idle timeout", "stageId": "only"}
        conversation_id = client.conversation_id
    async with await connect(server) as again:
        await again.auth("sleepy-key")
        reply = await again.request(
            "resume_conversation", check=False, conversationId=conversation_id
        )
        assert reply["error"] == "Conversation cannot be resumed: aborted"


# --- the LLM path ---------------------------------------------------------------------------


async def test_llm_responses_stream(server: ServerProcess, fake_llm: FakeOpenAi) -> None:
    async with await started(server, "llm-key") as client:
        greeting = await client.next_turn()
        assert greeting.text == "Hello from the LLM."
        assert greeting.chunks[:4] == ["Hello", " from", " the", " LLM."]
        assert await say(client, "how are you?") == "Hello from the LLM."
        body = fake_llm.requests[-1].body
        assert body["model"] == "test-model" and body["stream"] is True
        system = body["messages"][0]
        assert system["role"] == "system"
        assert "You are Bot, working for Lab Inc." in system["content"]
        assert "Stage chat. Counter 7." in system["content"]
        assert body["messages"][-1] == {"role": "user", "content": "how are you?"}
        message = events(client, "message")[-1]
        assert message["llmDurationMs"] >= 0


def script(fake: FakeOpenAi, *replies: Reply) -> None:
    """The fake's next chat replies (it serves its script by request count)."""
    served = len(fake.requests)
    fake.replies = [Reply()] * served + list(replies)


async def test_llm_barge_in_stops_the_stream(server: ServerProcess, fake_llm: FakeOpenAi) -> None:
    async with await started(server, "llm-key") as client:
        await client.next_turn()
        words = [f"w{i} " for i in range(40)]
        script(fake_llm, Reply.text(words, chunk_delay_s=0.05), Reply.text(["Sure."]))
        await client.send_text("tell me everything")
        await client.wait_type("ai_transcribed_chunk")
        await client.wait_type("ai_transcribed_chunk")
        await client.send_text("stop")
        aborted = await client.wait_type("abort_ai_generation_output")
        partial = aborted["accumulatedText"]
        assert partial.startswith("w0 w1 ") and partial != "".join(words)
        assert (await client.next_turn()).text == "Sure."
        history = fake_llm.requests[-1].body["messages"]
        assert {"role": "assistant", "content": partial} in history
        assert history[-1] == {"role": "user", "content": "stop"}


async def test_llm_failure_falls_back(server: ServerProcess, fake_llm: FakeOpenAi) -> None:
    async with await started(server, "llm-key") as client:
        await client.next_turn()
        script(fake_llm, Reply.error(500, "model exploded"))
        text = await say(client, "hello?")
        assert text == "Sorry, I did not understand that. Could you rephrase?"
        assert "model exploded" not in str(client.log)


async def test_resume_takes_a_conversation_over_from_a_live_session(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as first:
        conversation_id = first.conversation_id
        async with await connect(server) as second:
            await second.auth("lab-key")
            await second.resume(str(conversation_id))
            assert await say(second, "bump") == "Counter is 1."
            refused = await first.command("send_user_text_input", check=False, text="bump")
            assert refused["error"] == "No active conversation in this session"
            assert not any(m.get("type") == "ai_transcribed_chunk" for m in first.log)


async def test_a_stage_jump_interrupts_the_answer(server: ServerProcess) -> None:
    async with await started(server, "lab-key") as client:
        await client.send_text("story")
        start = await client.wait_type("start_ai_generation_output")
        await client.wait_type("ai_transcribed_chunk")
        await client.command("go_to_stage", stageId="other")
        aborted = next(m for m in client.log if m.get("type") == "abort_ai_generation_output")
        assert aborted["outputTurnId"] == start["outputTurnId"]
        assert (await client.next_turn()).text == "Welcome to the other stage."


async def test_llm_classifier_and_llm_tool(server: ServerProcess, fake_llm: FakeOpenAi) -> None:
    async with await started(server, "llm-key") as client:
        await client.next_turn()
        await client.command("go_to_stage", stageId="orders")
        # Nothing matches offline, so the LLM picks the action by name.
        script(fake_llm, Reply.text(["cancel_order"]))
        assert await say(client, "I don't want the thing I bought any more") == (
            "Your order is cancelled."
        )
        classifier = fake_llm.requests[-1].body["messages"]
        assert "cancel_order" in classifier[0]["content"]
        script(fake_llm, Reply.text(["Weather."]))
        reply = await client.command("call_tool", toolId="summarize", parameters={"text": "rain"})
        assert reply["result"] == [{"contentType": "text", "text": "Weather."}]
        prompt = fake_llm.requests[-1].body["messages"][-1]
        assert prompt == {"role": "user", "content": "Summarize in one word: rain"}


async def test_troubleshooting_opens_a_ticket_through_a_post_webhook(server: ServerProcess) -> None:
    async with await started(server) as client:
        await client.next_turn()
        await say(client, "1003")
        await say(client, "I need help, my dock is broken")
        await say(client, "it keeps disconnecting, bluetooth pairing fails")
        answer = await say(client, "no, that didn't help")
        assert "I've opened ticket T-" in answer and "connectivity problem" in answer
        call = events(client, "tool_call")[-1]
        assert call["toolId"] == "open_ticket"
        assert call["result"]["status"] == 201
        assert call["result"]["data"]["orderId"] == "1003"
