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
* A server that ignores ``"stream": true`` and answers with one JSON completion still works: its
  whole text is yielded as one delta.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import aiohttp
from yarl import URL

from hubbub.conversation.providers.base import ChatMessage, LlmProvider, ProviderError

MAX_ERROR_BODY_BYTES: Final = 64 * 1024
_DONE: Final = "[DONE]"


def _default_session() -> aiohttp.ClientSession:
    # Many conversations share one provider: allow more parallel streams than aiohttp's 100.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1_000))


class OpenAiCompatibleLlm(LlmProvider):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout_s: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] = _default_session,
        idle_timeout_s: float | None = None,
    ) -> None:
        if URL(base_url).user is not None and api_key:
            raise ValueError("give either credentials in base_url or an api_key, not both")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._server = str(URL(base_url).origin())  # for messages: no path, no credentials
        self._api_key = api_key
        self._model = model
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s,
            sock_connect=min(timeout_s, idle_timeout_s or timeout_s),
            sock_read=idle_timeout_s or timeout_s,
        )
        self._extra_body = dict(extra_body or {})
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, messages: Sequence[ChatMessage], temperature: float | None) -> dict[str, Any]:
        body = dict(self._extra_body)
        body["model"] = self._model
        body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        body["stream"] = True
        if temperature is not None:
            body["temperature"] = temperature
        return body

    async def stream_chat(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None
    ) -> AsyncGenerator[str, None]:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        try:
            async with self._session.post(
                self._url,
                json=self._body(messages, temperature),
                headers=self._headers(),
                timeout=self._timeout,
            ) as response:
                if response.status >= 400:
                    raise self._error(await self._http_error(response))
                if response.content_type == "application/json":
                    yield _completion_text(await self._json(response))
                    return
                async for delta in self._read_events(response):
                    yield delta
        except ProviderError:
            raise
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                idle_s = self._timeout.sock_read
                raise self._error(f"no data from the LLM server for {idle_s} s") from None
            raise self._error(f"LLM request took longer than {self._timeout.total} s") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise self._error(f"cannot reach the LLM server at {self._server}: {reason}") from None
        except aiohttp.ClientPayloadError:
            raise self._error("the LLM server's stream was cut off") from None
        except aiohttp.ClientError as exc:
            raise self._error(f"LLM request failed: {type(exc).__name__}: {exc}") from None

    async def _read_events(self, response: aiohttp.ClientResponse) -> AsyncIterator[str]:
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
                raise self._error(f"malformed stream from the LLM server: {_excerpt(line)}")
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
            raise self._error(f"malformed stream from the LLM server: {_excerpt(data)}") from None
        if not isinstance(chunk, dict):
            raise self._error(f"malformed stream from the LLM server: {_excerpt(data)}")
        if "error" in chunk:
            raise self._error(f"LLM server error mid-stream: {_error_message(chunk)}")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise self._error(f"malformed stream from the LLM server: {_excerpt(data)}")
        if not choices:
            return "", None  # e.g. a usage or content-filter report
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise self._error(f"malformed stream from the LLM server: {_excerpt(data)}")
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise self._error(f"malformed stream from the LLM server: {_excerpt(data)}")
        finish_reason = choice.get("finish_reason")
        return content or "", finish_reason if isinstance(finish_reason, str) else None

    async def _json(self, response: aiohttp.ClientResponse) -> Any:
        try:
            return json.loads(await response.read())
        except ValueError:
            raise self._error("the LLM server answered with invalid JSON") from None

    async def _http_error(self, response: aiohttp.ClientResponse) -> str:
        body = await response.content.read(MAX_ERROR_BODY_BYTES)
        try:
            detail = _error_message(json.loads(body))
        except ValueError:
            detail = _excerpt(body.decode("utf-8", errors="replace")) or response.reason or ""
        return f"the LLM server answered HTTP {response.status}: {detail}"

    def _error(self, message: str) -> ProviderError:
        # Servers sometimes echo the key back ("Incorrect API key provided: sk-...").
        if self._api_key:
            message = message.replace(self._api_key, "[redacted]")
        return ProviderError(message)


def _completion_text(completion: Any) -> str:
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ProviderError("the LLM server answered with an unexpected completion") from None
    return content if isinstance(content, str) else ""


def _error_message(body: Any) -> str:
    """The message of an OpenAI-style ``{"error": {"message": ...}}`` body, else an excerpt."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return _excerpt(json.dumps(body))


def _excerpt(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"
