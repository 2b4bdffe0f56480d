"""The HTTP client of the hooks: one pooled aiohttp session per hook kind.

Vendor errors stop here. A call either returns a :class:`HookResponse` (any status) or raises
:class:`HookFailure` with a short ``outcome`` word (``timeout``, ``unreachable``,
``too_large``) that metrics and logs use. The deadline covers the whole exchange (connect,
send, reading the body), so a backend that accepts a connection and never answers costs at
most ``timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from hubbub.errors import HookError

# A backend's answer is small (a verdict, a replacement payload); anything past this is refused.
MAX_ANSWER_BYTES: Final = 1_048_576


@dataclass(frozen=True, slots=True)
class HookResponse:
    status: int
    body: bytes


class HookFailure(HookError):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail


class HookHttpClient:
    """Created lazily inside the running loop; ``max_connections`` bounds the pool."""

    def __init__(self, *, max_connections: int = 100, user_agent: str = "hubbub-hooks") -> None:
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=30.0, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent},
                # Each call brings its own deadline; the default would cap it at 5 minutes.
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> HookResponse:
        session = self._open()
        try:
            async with asyncio.timeout(timeout_s):
                async with session.post(
                    url, data=body, headers=dict(headers), allow_redirects=False
                ) as response:
                    answer = await response.content.read(max_answer_bytes + 1)
                    if len(answer) > max_answer_bytes:
                        raise HookFailure("too_large", f"answer over {max_answer_bytes} bytes")
                    return HookResponse(response.status, answer)
        except TimeoutError:
            raise HookFailure("timeout", f"no answer within {timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise HookFailure("unreachable", str(exc) or type(exc).__name__) from None
        except (OSError, ValueError) as exc:
            raise HookFailure("unreachable", str(exc) or type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
