"""HTTP requests for conversation webhook tools: the tools' client, beside them.

The engine sees only :class:`~hubbub.conversation.runtime.tools.WebhookRequester`; this module
is the one place of the runtime that imports aiohttp, and ``server.py`` picks it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from hubbub.conversation.runtime.tools import WebhookError


class AiohttpWebhookClient:
    """One shared connection pool; created lazily inside the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: str | None,
        timeout_s: float,
    ) -> dict[str, Any]:
        """``{"ok", "status", "data"}``: data is the parsed JSON body, or its text."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=body.encode() if body is not None else None,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                text = await response.text()
                data: Any = text
                if "json" in (response.content_type or ""):
                    try:
                        data = json.loads(text)
                    except ValueError:
                        data = text
                return {"ok": response.status < 400, "status": response.status, "data": data}
        except TimeoutError:
            raise WebhookError(f"timed out after {timeout_s:g} s") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise WebhookError(str(exc) or type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
