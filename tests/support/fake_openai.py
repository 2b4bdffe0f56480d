"""A loopback HTTP server that speaks the OpenAI-compatible API, for provider tests.

    async with FakeOpenAi(replies=[Reply.text(["Hel", "lo"])]) as server:
        llm = OpenAiCompatibleLlm(base_url=server.base_url, api_key="sk-test", model="m")
        ...
        server.requests[0].body["messages"]

Each request to ``/v1/chat/completions`` takes the next scripted :class:`Reply` (the last one
repeats once the script runs out). Streaming requests (``"stream": true``) get SSE
``data: {...}`` chunks and ``data: [DONE]``; others get one ``chat.completion`` JSON object.
Requests are recorded (JSON bodies decoded); a client that goes away mid-stream sets
:attr:`FakeOpenAi.disconnected`. (The speech endpoints have their own fakes in tests/voice.)
Nothing is slept on to wait for an event: delays only pace the fake's own output.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one chat-completions request."""

    chunks: Sequence[str] = ("Hello", " there", "!")
    chunk_delay_s: float = 0.0
    status: int = 200
    error_body: dict[str, Any] | None = None
    raw_lines: Sequence[str] | None = None  # sent verbatim instead of well-formed chunks
    hang_after_chunks: int | None = None  # stop sending (but keep the stream open) after N chunks
    hang_before_headers: bool = False
    ignore_stream: bool = False  # answer one JSON completion even when asked to stream
    # Function calls the model asks for, (name, JSON arguments), after the text chunks.
    tool_calls: Sequence[tuple[str, str]] = ()

    @classmethod
    def text(cls, chunks: Sequence[str], *, chunk_delay_s: float = 0.0) -> Reply:
        return cls(chunks=tuple(chunks), chunk_delay_s=chunk_delay_s)

    @classmethod
    def calls(cls, *calls: tuple[str, str], text: Sequence[str] = ()) -> Reply:
        """The model calls these functions (streamed in pieces, arguments split in two)."""
        return cls(chunks=tuple(text), tool_calls=tuple(calls))

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
    ) -> Reply:
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        return cls(status=status, error_body=body)

    @classmethod
    def raw(cls, lines: Sequence[str]) -> Reply:
        return cls(raw_lines=tuple(lines))

    @classmethod
    def hang(cls, *, after_chunks: int = 0, before_headers: bool = False) -> Reply:
        return cls(hang_after_chunks=after_chunks, hang_before_headers=before_headers)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # decoded JSON (raw bytes when it is not JSON)


@dataclass
class FakeOpenAi:
    replies: Sequence[Reply] = (Reply(),)
    model: str = "fake-model"
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    streams_completed: int = 0
    _runner: web.AppRunner | None = None
    _port: int = 0
    _served: dict[str, int] = field(default_factory=dict)
    _hang_forever: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    async def __aenter__(self) -> FakeOpenAi:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        # handler_cancellation: a client disconnect cancels the handler, which records it.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _next_reply(self, script: Sequence[Reply], endpoint: str) -> Reply:
        served = self._served.get(endpoint, 0)
        self._served[endpoint] = served + 1
        return script[min(served, len(script) - 1)]

    async def _record(self, request: web.Request) -> Any:
        body: Any
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        return body

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        reply = self._next_reply(self.replies, "chat")
        try:
            if reply.hang_before_headers:
                await self._hang_forever.wait()
            if reply.status != 200:
                return web.json_response(reply.error_body, status=reply.status)
            if isinstance(body, dict) and body.get("stream") is True and not reply.ignore_stream:
                return await self._stream(request, reply)
            return web.json_response(self._completion(reply))
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected.set()
            raise

    def _completion(self, reply: Reply) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(reply.chunks) or None,
                        **(
                            {
                                "tool_calls": [
                                    {
                                        "id": f"call_{i}",
                                        "type": "function",
                                        "function": {"name": name, "arguments": arguments},
                                    }
                                    for i, (name, arguments) in enumerate(reply.tool_calls)
                                ]
                            }
                            if reply.tool_calls
                            else {}
                        ),
                    },
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return "data: " + json.dumps(chunk)

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        if reply.raw_lines is not None:
            lines = list(reply.raw_lines)
        else:
            lines = [self._chunk({"role": "assistant", "content": ""})]
            lines += [self._chunk({"content": text}) for text in reply.chunks]
            for i, (name, arguments) in enumerate(reply.tool_calls):
                half = len(arguments) // 2
                opening = {"index": i, "id": f"call_{i}", "type": "function"}
                lines.append(
                    self._chunk(
                        {"tool_calls": [{**opening, "function": {"name": name, "arguments": ""}}]}
                    )
                )
                for piece in (arguments[:half], arguments[half:]):
                    lines.append(
                        self._chunk(
                            {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                        )
                    )
            finish = "tool_calls" if reply.tool_calls else "stop"
            lines += [self._chunk({}, finish), "data: [DONE]"]
        for index, line in enumerate(lines):
            if reply.hang_after_chunks is not None and index >= reply.hang_after_chunks + 1:
                await self._hang_forever.wait()
            if reply.chunk_delay_s and index > 0:
                await asyncio.sleep(reply.chunk_delay_s)
            await response.write((line + "\n\n").encode())
        await response.write_eof()
        self.streams_completed += 1
        return response
