"""The HTTP client shared by the OpenAI-compatible providers (LLM, speech recognition, speech).

One ``aiohttp.ClientSession`` per provider, created on first use; :meth:`OpenAiHttpClient.post`
turns every transport failure into a :class:`ProviderError` with a message that names the cause
and never contains the API key or credentials from the base URL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from yarl import URL

from hubbub.conversation.voice.providers.base import ProviderError

MAX_ERROR_BODY_BYTES: Final = 64 * 1024

SessionFactory = Callable[[], aiohttp.ClientSession]


def default_session() -> aiohttp.ClientSession:
    # Many conversations share one provider: allow more parallel requests than aiohttp's 100.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1_000))


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart form (see :meth:`OpenAiHttpClient.post_form`)."""

    content: bytes
    filename: str
    content_type: str


class OpenAiHttpClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        service: str,
        timeout_s: float | None,
        idle_timeout_s: float | None = None,
        session_factory: SessionFactory = default_session,
    ) -> None:
        """``service`` names the server in messages ("LLM", "speech recognition", ...).

        ``timeout_s=None`` leaves the whole request unbounded (a streamed answer may last
        longer than any fixed total); ``idle_timeout_s`` then bounds every wait on its own.
        """
        if URL(base_url).user is not None and api_key:
            raise ValueError("give either credentials in base_url or an api_key, not both")
        idle_s = idle_timeout_s or timeout_s
        if idle_s is None:
            raise ValueError("give a timeout_s or an idle_timeout_s: some wait must be bounded")
        self._base_url = base_url.rstrip("/")
        self._origin = str(URL(base_url).origin())  # for messages: no path, no credentials
        self._api_key = api_key
        self._service = service
        self.timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(timeout_s or idle_s, idle_s), sock_read=idle_s
        )
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @asynccontextmanager
    async def post(
        self,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
        accept: str = "application/json",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to ``base_url + path``; a 4xx/5xx answer raises before the body runs.

        Failures while the caller reads the response inside the ``async with`` block are
        translated too (timeouts between chunks, a stream cut off).
        """
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        headers = {"Accept": accept}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            async with self._session.post(
                self._base_url + path,
                json=json_body,
                data=form,
                headers=headers,
                timeout=self.timeout,
            ) as response:
                if response.status >= 400:
                    raise self.error(await self._http_error(response))
                yield response
        except ProviderError:
            raise
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                idle_s = self.timeout.sock_read
                raise self.error(
                    f"no data from the {self._service} server for {idle_s} s"
                ) from None
            total_s = self.timeout.total
            if total_s is None:
                raise self.error(f"{self._service} request timed out") from None
            raise self.error(f"{self._service} request took longer than {total_s} s") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise self.error(
                f"cannot reach the {self._service} server at {self._origin}: {reason}"
                " (server unreachable)"
            ) from None
        except aiohttp.ClientPayloadError:
            raise self.error(f"the {self._service} server's answer was cut off") from None
        except aiohttp.ClientError as exc:
            raise self.error(
                f"{self._service} request failed: {type(exc).__name__}: {exc}"
            ) from None

    def post_form(
        self,
        path: str,
        fields: Mapping[str, str | Upload],
        *,
        accept: str = "application/json",
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """:meth:`post` with a ``multipart/form-data`` body built from ``fields``."""
        form = aiohttp.FormData()
        for name, value in fields.items():
            if isinstance(value, Upload):
                form.add_field(
                    name, value.content, filename=value.filename, content_type=value.content_type
                )
            else:
                form.add_field(name, value)
        return self.post(path, form=form, accept=accept)

    async def read_json(self, response: aiohttp.ClientResponse) -> Any:
        try:
            return json.loads(await response.read())
        except ValueError:
            raise self.error(f"the {self._service} server answered with invalid JSON") from None

    def error(self, message: str) -> ProviderError:
        # Servers sometimes echo the key back ("Incorrect API key provided: sk-...").
        if self._api_key:
            message = message.replace(self._api_key, "[redacted]")
        return ProviderError(message)

    async def _http_error(self, response: aiohttp.ClientResponse) -> str:
        body = await response.content.read(MAX_ERROR_BODY_BYTES)
        try:
            detail = error_message(json.loads(body))
        except ValueError:
            detail = excerpt(body.decode("utf-8", errors="replace")) or response.reason or ""
        return f"the {self._service} server answered HTTP {response.status}: {detail}"


def error_message(body: Any) -> str:
    """The message of an OpenAI-style ``{"error": {"message": ...}}`` body, else an excerpt."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return excerpt(json.dumps(body))


def excerpt(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"
