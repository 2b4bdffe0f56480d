"""A user's backend for tests: a real aiohttp app on a free loopback port.

    async with running_backend() as backend:
        backend.url("/hooks")                 # "http://127.0.0.1:PORT/hooks"
        backend.answer("/hooks", 500)         # or a callable, or HANG (never answers)
        await backend.wait_for(lambda rs: len(rs) >= 3)
        backend.received("/hooks")            # [Received(path, headers, body, json), ...]

Every request is recorded before it is answered. ``stop()`` / ``start()`` take the port down
and bring it back (the same port), for "the backend is down" tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

EVENT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        expected = hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Hubbub-Signature", ""))


class _Hang:
    """Accept the request and never answer (the caller's timeout must fire)."""


HANG = _Hang()
Answer = tuple[int, Any] | _Hang
Responder = Callable[[Received], Answer | Awaitable[Answer]]


@dataclass
class Backend:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    # Each request with the status it was answered (hung requests are not listed).
    answered: list[tuple[Received, int]] = field(default_factory=list)
    _answers: dict[str, Responder] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _hanging: set[asyncio.Future[None]] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, answer: int | Answer | Responder, body: Any = None) -> None:
        """What ``path`` answers from now on: a status (with ``body``), HANG, or a callable."""
        if isinstance(answer, int):
            fixed: Answer = (answer, body)
            self._answers[path] = lambda _: fixed
        elif isinstance(answer, tuple | _Hang):
            fixed_answer = answer
            self._answers[path] = lambda _: fixed_answer
        else:
            self._answers[path] = answer

    def received(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def accepted(self, path: str) -> list[Received]:
        """Requests to ``path`` answered 2xx, in the order they were answered."""
        return [r for r, status in self.answered if r.path == path and 200 <= status < 300]

    async def wait_for(
        self, condition: Callable[[list[Received]], bool], timeout_s: float = EVENT_TIMEOUT_S
    ) -> list[Received]:
        async with asyncio.timeout(timeout_s):
            while not condition(self.requests):
                self._changed.clear()
                await self._changed.wait()
        return self.requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(received)
        self._changed.set()
        responder = self._answers.get(request.path, lambda _: (200, {}))
        answer = responder(received)
        if asyncio.iscoroutine(answer) or isinstance(answer, asyncio.Future):
            answer = await answer
        if isinstance(answer, _Hang):
            never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hanging.add(never)
            try:
                await never
            finally:
                self._hanging.discard(never)
            raise web.HTTPServiceUnavailable()
        assert isinstance(answer, tuple)
        status, body = answer
        self.answered.append((received, status))
        self._changed.set()
        if body is None:
            return web.Response(status=status)
        if isinstance(body, bytes | str):
            return web.Response(status=status, body=body, content_type="application/json")
        return web.json_response(body, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close the port: connections are refused until ``start()``."""
        for never in list(self._hanging):
            never.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def running_backend() -> AsyncIterator[Backend]:
    backend = Backend()
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()
