"""An :class:`LlmProvider` for any server speaking the OpenAI-compatible chat-completions API.

OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio and most hosted gateways accept
``POST {base_url}/chat/completions`` with ``"stream": true`` and answer with server-sent events:
``data: {"choices": [{"delta": {"content": "..."}}]}`` lines, then ``data: [DONE]``.

Behaviour worth knowing:

* One ``aiohttp.ClientSession`` per provider, created on first use and shared by every
  conversation (connection pooling); :meth:`OpenAiCompatibleLlm.close` releases it.
* ``stream_chat`` is an async generator: stop it with ``aclose()`` (``contextlib.aclosing``) or by
  cancelling the consuming task, and the HTTP stream is closed at once, so the server stops
  generating. Merely abandoning the iterator leaves the stream open until garbage collection.
* ``timeout_s`` bounds the whole request, answer included; ``idle_timeout_s`` (default
  ``timeout_s``) bounds the wait for each piece of data (the first token and every later chunk).
* Every failure is a :class:`ProviderError` whose message names the cause (HTTP status and the
  server's error message, malformed stream, unreachable server, timeout) and never contains
  the API key.
* Function calling (``stream_turn``): the functions go in ``tools`` (``tool_choice`` "auto", or
  "none" when calls are not allowed); streamed ``tool_calls`` pieces are assembled by index and
  yielded, complete, after the text. A ``tool`` message answering one of the model's calls
  (it has a ``tool_call_id``) is sent as the API's ``tool`` role; other ``tool`` messages (the
  results of tools run by actions, which the model did not ask for) go in as ``system`` notes.
* A server that ignores ``"stream": true`` and answers with one JSON completion still works: its
  whole text is yielded as one delta.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final

import aiohttp

from hubbub.conversation.voice.providers.base import (
    ChatMessage,
    FunctionSpec,
    LlmProvider,
    ProviderError,
    ToolCall,
)
from hubbub.conversation.voice.providers.openai_http import (
    OpenAiHttpClient,
    SessionFactory,
    default_session,
    error_message,
    excerpt,
)

_DONE: Final = "[DONE]"


class OpenAiCompatibleLlm(LlmProvider):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout_s: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
        session_factory: SessionFactory = default_session,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._http = OpenAiHttpClient(
            base_url=base_url,
            api_key=api_key,
            service="LLM",
            timeout_s=timeout_s,
            idle_timeout_s=idle_timeout_s,
            session_factory=session_factory,
        )
        self._model = model
        self._extra_body = dict(extra_body or {})

    async def close(self) -> None:
        await self._http.close()

    def _body(
        self,
        messages: Sequence[ChatMessage],
        temperature: float | None,
        functions: Sequence[FunctionSpec] = (),
        allow_calls: bool = True,
    ) -> dict[str, Any]:
        body = dict(self._extra_body)
        body["model"] = self._model
        body["messages"] = [_wire_message(m) for m in messages]
        body["stream"] = True
        if temperature is not None:
            body["temperature"] = temperature
        if functions:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": f.name,
                        "description": f.description,
                        "parameters": f.parameters,
                    },
                }
                for f in functions
            ]
            body["tool_choice"] = "auto" if allow_calls else "none"
        return body

    @property
    def calls_functions(self) -> bool:
        return True

    async def stream_chat(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None
    ) -> AsyncGenerator[str, None]:
        async with aclosing(self._stream(self._body(messages, temperature))) as items:
            async for item in items:
                if isinstance(item, str):
                    yield item

    async def stream_turn(
        self,
        messages: Sequence[ChatMessage],
        *,
        functions: Sequence[FunctionSpec],
        allow_calls: bool = True,
        temperature: float | None = None,
    ) -> AsyncGenerator[str | ToolCall, None]:
        body = self._body(messages, temperature, functions, allow_calls)
        async with aclosing(self._stream(body)) as items:
            async for item in items:
                if allow_calls or isinstance(item, str):
                    yield item

    async def _stream(self, body: dict[str, Any]) -> AsyncGenerator[str | ToolCall, None]:
        async with self._http.post(
            "/chat/completions", json_body=body, accept="text/event-stream"
        ) as response:
            if response.content_type == "application/json":
                text, calls = _completion(await self._http.read_json(response))
                if text:
                    yield text
                for call in calls:
                    yield call
                return
            assembler = _CallAssembler(self._error)
            async with aclosing(self._read_events(response, assembler)) as deltas:
                async for delta in deltas:
                    yield delta
            for call in assembler.finished():
                yield call

    async def _read_events(
        self, response: aiohttp.ClientResponse, calls: _CallAssembler
    ) -> AsyncGenerator[str, None]:
        finished = False
        while True:
            try:
                raw = await response.content.readline()
            except ValueError:  # aiohttp's line-length limit
                raise self._error("malformed stream from the LLM server: line too long") from None
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line or line.startswith(":"):
                continue  # event separator or SSE comment (keep-alive)
            field, _, value = line.partition(":")
            if field in ("event", "id", "retry"):
                continue
            if field != "data":
                raise self._error(f"malformed stream from the LLM server: {excerpt(line)}")
            data = value[1:] if value.startswith(" ") else value
            if data.strip() == _DONE:
                return
            delta, finish_reason = self._parse_chunk(data, calls)
            finished = finished or finish_reason is not None
            if delta:
                yield delta
        if not finished:
            raise self._error("the LLM server's stream ended before the answer was complete")

    def _parse_chunk(self, data: str, calls: _CallAssembler) -> tuple[str, str | None]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._error(f"malformed stream from the LLM server: {excerpt(data)}") from None
        if not isinstance(chunk, dict):
            raise self._error(f"malformed stream from the LLM server: {excerpt(data)}")
        if "error" in chunk:
            raise self._error(f"LLM server error mid-stream: {error_message(chunk)}")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise self._error(f"malformed stream from the LLM server: {excerpt(data)}")
        if not choices:
            return "", None  # e.g. a usage or content-filter report
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise self._error(f"malformed stream from the LLM server: {excerpt(data)}")
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise self._error(f"malformed stream from the LLM server: {excerpt(data)}")
        tool_calls = delta.get("tool_calls")
        if tool_calls is not None:
            calls.add(tool_calls, data)
        finish_reason = choice.get("finish_reason")
        return content or "", finish_reason if isinstance(finish_reason, str) else None

    def _error(self, message: str) -> ProviderError:
        return self._http.error(message)


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        if message.tool_call_id is not None:  # the answer to one of the model's own calls
            return {
                "role": "tool",
                "tool_call_id": message.tool_call_id,
                "content": message.content,
            }
        # The API's "tool" role must answer a native tool call; the results of tools run by
        # actions go in as system notes the model can read.
        return {"role": "system", "content": f"Tool result: {message.content}"}
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": call.id,
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


class _CallAssembler:
    """Streamed tool calls arrive in pieces keyed by ``index``: the first names the call and
    its id, the later ones append to its arguments."""

    def __init__(self, error: Callable[[str], ProviderError]) -> None:
        self._error = error
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]

    def add(self, pieces: Any, data: str) -> None:
        if not isinstance(pieces, list):
            raise self._error(f"malformed tool call from the LLM server: {excerpt(data)}")
        for piece in pieces:
            index = piece.get("index", 0) if isinstance(piece, dict) else None
            function = piece.get("function", {}) if isinstance(piece, dict) else None
            if not isinstance(index, int) or not isinstance(function, dict):
                raise self._error(f"malformed tool call from the LLM server: {excerpt(data)}")
            call = self._calls.setdefault(index, ["", "", ""])
            for slot, value in (
                (0, piece.get("id")),
                (1, function.get("name")),
                (2, function.get("arguments")),
            ):
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise self._error(f"malformed tool call from the LLM server: {excerpt(data)}")
                call[slot] = call[slot] + value if slot == 2 else value

    def finished(self) -> list[ToolCall]:
        return [
            ToolCall(id=call_id or f"call_{index}", name=name, arguments=arguments or "{}")
            for index, (call_id, name, arguments) in sorted(self._calls.items())
            if name
        ]


def _completion(completion: Any) -> tuple[str, list[ToolCall]]:
    try:
        message = completion["choices"][0]["message"]
        content = message.get("content")
        raw_calls = message.get("tool_calls") or []
        calls = [
            ToolCall(
                id=str(call.get("id") or f"call_{i}"),
                name=str(call["function"]["name"]),
                arguments=str(call["function"].get("arguments") or "{}"),
            )
            for i, call in enumerate(raw_calls)
        ]
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError("the LLM server answered with an unexpected completion") from None
    return (content if isinstance(content, str) else ""), calls
