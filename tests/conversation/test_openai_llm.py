"""The OpenAI-compatible LLM provider against a loopback fake that speaks the same API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hubbub.conversation.voice.providers.base import (
    ChatMessage,
    FunctionSpec,
    ProviderError,
    ToolCall,
)
from hubbub.conversation.voice.providers.openai_llm import OpenAiCompatibleLlm
from tests.support.fake_openai import FakeOpenAi, Reply

API_KEY = "sk-test-4f9a2c1e7b"
MESSAGES = [ChatMessage("system", "You are terse."), ChatMessage("user", "Hi")]


@contextlib.asynccontextmanager
async def provider_for(
    server: FakeOpenAi, *, timeout_s: float = 5.0, idle_timeout_s: float | None = None
) -> AsyncIterator[OpenAiCompatibleLlm]:
    llm = OpenAiCompatibleLlm(
        base_url=server.base_url,
        api_key=API_KEY,
        model="test-model",
        timeout_s=timeout_s,
        idle_timeout_s=idle_timeout_s,
        extra_body={"max_tokens": 64, "model": "overridden"},
    )
    try:
        yield llm
    finally:
        await llm.close()


async def collect(llm: OpenAiCompatibleLlm, temperature: float | None = None) -> list[str]:
    return [delta async for delta in llm.stream_chat(MESSAGES, temperature=temperature)]


async def test_streaming_deltas_add_up_and_request_is_well_formed() -> None:
    chunks = ["Your order ", "A-17 ", "ships ", "tomorrow", "."]
    async with FakeOpenAi(replies=[Reply.text(chunks)]) as server, provider_for(server) as llm:
        assert await collect(llm, temperature=0.2) == chunks
        [request] = server.requests
        assert request.path == "/v1/chat/completions"
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert request.body == {
            "max_tokens": 64,
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"},
            ],
            "stream": True,
            "temperature": 0.2,
        }
        assert server.streams_completed == 1


async def test_complete_joins_the_stream_and_session_is_reused() -> None:
    async with (
        FakeOpenAi(replies=[Reply.text(["a", "b"]), Reply.text(["c"])]) as server,
        provider_for(server) as llm,
    ):
        assert await llm.complete(MESSAGES) == "ab"
        assert await llm.complete(MESSAGES) == "c"
        assert "temperature" not in server.requests[0].body
        assert len(server.requests) == 2


async def test_tool_results_are_sent_as_system_notes() -> None:
    history = [*MESSAGES, ChatMessage("tool", '{"status": "shipped"}')]
    async with FakeOpenAi() as server, provider_for(server) as llm:
        await llm.complete(history)
    assert server.requests[0].body["messages"][-1] == {
        "role": "system",
        "content": 'Tool result: {"status": "shipped"}',
    }


async def test_no_api_key_sends_no_authorization_header() -> None:
    async with FakeOpenAi() as server:
        llm = OpenAiCompatibleLlm(base_url=server.base_url + "/", api_key=None, model="m")
        try:
            assert await llm.complete(MESSAGES) == "Hello there!"
        finally:
            await llm.close()
        assert "Authorization" not in server.requests[0].headers


async def test_concurrent_streams_share_the_provider() -> None:
    async with (
        FakeOpenAi(replies=[Reply.text(["x", "y", "z"], chunk_delay_s=0.01)]) as server,
        provider_for(server) as llm,
    ):
        answers = await asyncio.gather(*(llm.complete(MESSAGES) for _ in range(20)))
    assert answers == ["xyz"] * 20


async def test_non_streaming_answer_is_accepted() -> None:
    """A server ignoring "stream": true answers with one JSON completion."""
    reply = Reply(chunks=["whole ", "answer"], ignore_stream=True)
    async with FakeOpenAi(replies=[reply]) as server, provider_for(server) as llm:
        assert await collect(llm) == ["whole answer"]


async def test_fake_answers_non_streaming_requests() -> None:
    """The fake itself serves "stream": false (used by classifiers and llm tools)."""
    async with (
        FakeOpenAi(replies=[Reply.text(["one ", "two"])]) as server,
        aiohttp.ClientSession() as session,
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        async with session.post(server.base_url + "/chat/completions", json=body) as response:
            completion = await response.json()
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "one two"}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply.error(401, f"Incorrect API key provided: {API_KEY}."),
            "HTTP 401: Incorrect API key",
        ),
        (
            Reply.error(404, "The model `x` does not exist"),
            "HTTP 404: The model `x` does not exist",
        ),
        (Reply.error(429, "Rate limit reached", type_="requests"), "HTTP 429: Rate limit reached"),
        (Reply.error(500, "The server had an error"), "HTTP 500: The server had an error"),
        (Reply(status=502, error_body={"detail": "bad gateway"}), "HTTP 502: .*bad gateway"),
    ],
)
async def test_http_errors_raise_provider_error(reply: Reply, message: str) -> None:
    async with FakeOpenAi(replies=[reply]) as server, provider_for(server) as llm:
        with pytest.raises(ProviderError, match=message) as caught:
            await collect(llm)
    assert API_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["data: {not json"], "malformed stream.*not json"),
        (["data: [1, 2]"], "malformed stream"),
        (['data: {"choices": "nope"}'], "malformed stream"),
        (['data: {"choices": [{"delta": 5}]}'], "malformed stream"),
        (['data: {"choices": [{"delta": {"content": 7}}]}'], "malformed stream"),
        (["<html>Gateway</html>"], "malformed stream.*Gateway"),
        (['data: {"error": {"message": "overloaded"}}'], "mid-stream: overloaded"),
        (['data: {"choices": [{"delta": {"content": "cut"}}]}'], "ended before the answer"),
        (["data: " + "x" * 300_000], "malformed stream"),
    ],
)
async def test_malformed_stream_raises_provider_error(lines: list[str], message: str) -> None:
    async with FakeOpenAi(replies=[Reply.raw(lines)]) as server, provider_for(server) as llm:
        with pytest.raises(ProviderError, match=message):
            await collect(llm)


async def test_tolerated_stream_variations() -> None:
    """Comments, event/id fields, empty choices, no space after "data:", finish without [DONE]."""
    lines = [
        ": keep-alive",
        "event: message",
        "id: 1",
        'data: {"choices": [], "prompt_filter_results": []}',
        'data:{"choices": [{"delta": {"role": "assistant"}}]}',
        'data: {"choices": [{"delta": {"content": "ok"}, "finish_reason": null}]}',
        'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}',
    ]
    async with FakeOpenAi(replies=[Reply.raw(lines)]) as server, provider_for(server) as llm:
        assert await collect(llm) == ["ok"]


async def test_connection_refused_raises_provider_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = OpenAiCompatibleLlm(
        base_url=f"http://user:pw@127.0.0.1:{port}/v1", api_key=None, model="m"
    )
    try:
        with pytest.raises(
            ProviderError, match=f"cannot reach the LLM server at http://127.0.0.1:{port}"
        ) as caught:
            await collect(llm)
    finally:
        await llm.close()
    assert "pw" not in str(caught.value)


def test_credentials_in_url_and_api_key_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        OpenAiCompatibleLlm(base_url="http://u:p@127.0.0.1:1/v1", api_key=API_KEY, model="m")


async def test_hang_before_headers_times_out() -> None:
    async with (
        FakeOpenAi(replies=[Reply.hang(before_headers=True)]) as server,
        provider_for(server, timeout_s=5.0, idle_timeout_s=0.3) as llm,
    ):
        started = time.monotonic()
        with pytest.raises(ProviderError, match=r"no data from the LLM server for 0\.3 s"):
            await collect(llm)
        assert time.monotonic() - started < 3.0


async def test_hang_between_chunks_times_out_after_partial_answer() -> None:
    async with (
        FakeOpenAi(replies=[Reply.hang(after_chunks=2)]) as server,
        provider_for(server, timeout_s=5.0, idle_timeout_s=0.3) as llm,
    ):
        received: list[str] = []
        with pytest.raises(ProviderError, match="no data from the LLM server"):
            async for delta in llm.stream_chat(MESSAGES):
                received.append(delta)
        assert received == ["Hello", " there"]
        await asyncio.wait_for(server.disconnected.wait(), 5)


async def test_total_timeout_bounds_a_slow_stream() -> None:
    slow = Reply.text(["a"] * 50, chunk_delay_s=0.05)
    async with (
        FakeOpenAi(replies=[slow]) as server,
        provider_for(server, timeout_s=0.5, idle_timeout_s=0.4) as llm,
    ):
        started = time.monotonic()
        with pytest.raises(ProviderError, match=r"longer than 0\.5 s"):
            await collect(llm)
        assert time.monotonic() - started < 3.0


async def test_slow_stream_within_limits_completes() -> None:
    slow = Reply.text(["s", "l", "o", "w"], chunk_delay_s=0.05)
    async with (
        FakeOpenAi(replies=[slow]) as server,
        provider_for(server, timeout_s=5.0, idle_timeout_s=1.0) as llm,
    ):
        assert await collect(llm) == ["s", "l", "o", "w"]


# --- stopping a stream ----------------------------------------------------------------------


async def test_aclose_stops_the_http_stream() -> None:
    endless = Reply.text([f"w{i} " for i in range(10_000)], chunk_delay_s=0.01)
    async with FakeOpenAi(replies=[endless]) as server, provider_for(server) as llm:
        async with contextlib.aclosing(llm.stream_chat(MESSAGES)) as stream:
            first = await anext(stream)
        assert first == "w0 "
        await asyncio.wait_for(server.disconnected.wait(), 5)
        assert server.streams_completed == 0
        # The provider still works after an aborted stream.
        server.replies = [Reply.text(["again"])]
        assert await llm.complete(MESSAGES) == "again"


async def test_cancelling_the_consumer_stops_the_http_stream() -> None:
    endless = Reply.text([f"w{i} " for i in range(10_000)], chunk_delay_s=0.01)
    async with FakeOpenAi(replies=[endless]) as server, provider_for(server) as llm:
        first_delta = asyncio.Event()

        async def consume() -> None:
            async for _ in llm.stream_chat(MESSAGES):
                first_delta.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first_delta.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.disconnected.wait(), 5)
        assert server.streams_completed == 0


async def test_close_is_idempotent_and_provider_reopens() -> None:
    async with FakeOpenAi() as server:
        llm = OpenAiCompatibleLlm(base_url=server.base_url, api_key=None, model="m")
        await llm.close()  # never used: nothing to close
        assert await llm.complete(MESSAGES) == "Hello there!"
        await llm.close()
        await llm.close()
        assert await llm.complete(MESSAGES) == "Hello there!"
        await llm.close()


# --- function calling -----------------------------------------------------------------------

WEATHER = FunctionSpec("tool_weather", "The weather.", {"type": "object", "properties": {}})


async def test_streamed_calls_are_assembled_after_the_text() -> None:
    reply = Reply.calls(("tool_weather", '{"city": "Oslo"}'), ("action_x", ""), text=["Hm. "])
    async with FakeOpenAi(replies=[reply]) as server, provider_for(server) as llm:
        items = [item async for item in llm.stream_turn(MESSAGES, functions=[WEATHER])]
        assert items == [
            "Hm. ",
            ToolCall("call_0", "tool_weather", '{"city": "Oslo"}'),
            ToolCall("call_1", "action_x", "{}"),
        ]
        body = server.requests[0].body
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "tool_weather",
                    "description": "The weather.",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ]
        assert body["tool_choice"] == "auto"


async def test_calls_not_allowed_are_dropped_and_asked_for_none() -> None:
    reply = Reply.calls(("tool_weather", "{}"), text=["Fine."])
    async with FakeOpenAi(replies=[reply]) as server, provider_for(server) as llm:
        turn = llm.stream_turn(MESSAGES, functions=[WEATHER], allow_calls=False)
        assert [item async for item in turn] == ["Fine."]
        assert server.requests[0].body["tool_choice"] == "none"


async def test_tool_messages_answer_calls_natively() -> None:
    call = ToolCall("call_7", "tool_weather", "{}")
    history = [
        *MESSAGES,
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", '{"ok":true}', tool_call_id="call_7"),
        ChatMessage("tool", "an action's tool result"),
    ]
    async with FakeOpenAi() as server, provider_for(server) as llm:
        assert await llm.complete(history)
        sent = server.requests[0].body["messages"][2:]
        assert sent == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "type": "function",
                        "id": "call_7",
                        "function": {"name": "tool_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_7", "content": '{"ok":true}'},
            {"role": "system", "content": "Tool result: an action's tool result"},
        ]
        assert "tools" not in server.requests[0].body


@pytest.mark.parametrize(
    "piece",
    [
        '"not a list"',
        '[{"index": "zero", "function": {}}]',
        '[{"index": 0, "function": {"name": 5}}]',
    ],
)
async def test_malformed_streamed_calls_are_provider_errors(piece: str) -> None:
    lines = [
        'data: {"choices": [{"delta": {"tool_calls": ' + piece + '}, "finish_reason": null}]}',
        "data: [DONE]",
    ]
    async with FakeOpenAi(replies=[Reply.raw(lines)]) as server, provider_for(server) as llm:
        with pytest.raises(ProviderError, match="malformed tool call"):
            async for _ in llm.stream_turn(MESSAGES, functions=[WEATHER]):
                pass
