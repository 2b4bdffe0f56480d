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
* ``tool`` messages are sent as ``system`` messages ("Tool result: ..."): the API's ``tool``
  role is only valid as the answer to a native tool call, which Hubbub's tools are not.
* A server that ignores ``"stream": true`` and answers with one JSON completion still works: its
  whole text is yielded as one delta.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final

import aiohttp

from hubbub.conversation.voice.providers.base import ChatMessage, LlmProvider, ProviderError
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

    def _body(self, messages: Sequence[ChatMessage], temperature: float | None) -> dict[str, Any]:
        body = dict(self._extra_body)
        body["model"] = self._model
        body["messages"] = [_wire_message(m) for m in messages]
        body["stream"] = True
        if temperature is not None:
            body["temperature"] = temperature
        return body

    async def stream_chat(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None
    ) -> AsyncGenerator[str, None]:
        async with self._http.post(
            "/chat/completions",
            json_body=self._body(messages, temperature),
            accept="text/event-stream",
        ) as response:
            if response.content_type == "application/json":
                yield _completion_text(await self._http.read_json(response))
                return
            async with aclosing(self._read_events(response)) as deltas:
                async for delta in deltas:
                    yield delta

    async def _read_events(self, response: aiohttp.ClientResponse) -> AsyncGenerator[str, None]:
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
            delta, finish_reason = self._parse_chunk(data)
            finished = finished or finish_reason is not None
            if delta:
                yield delta
        if not finished:
            raise self._error("the LLM server's stream ended before the answer was complete")

    def _parse_chunk(self, data: str) -> tuple[str, str | None]:
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
        finish_reason = choice.get("finish_reason")
        return content or "", finish_reason if isinstance(finish_reason, str) else None

    def _error(self, message: str) -> ProviderError:
        return self._http.error(message)


def _wire_message(message: ChatMessage) -> dict[str, str]:
    # The API's "tool" role must answer a native tool call (with its tool_call_id); our tools
    # run outside the model, so their results go in as system notes the model can read.
    if message.role == "tool":
        return {"role": "system", "content": f"Tool result: {message.content}"}
    return {"role": message.role, "content": message.content}


def _completion_text(completion: Any) -> str:
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ProviderError("the LLM server answered with an unexpected completion") from None
    return content if isinstance(content, str) else ""
