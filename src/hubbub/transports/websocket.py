"""The realtime WebSocket endpoint (``GET /v1``) on aiohttp: per-IP connect limit,
credentials and Origin (spec 2.2, 2.3), then the node takes over. Everything a connection
receives is written through its :class:`~hubbub.transports.ws_outbox.WebSocketOutbox`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.auth.connect import (
    CloseRejection,
    ConnectAttempt,
    ConnectProxy,
    HttpRejection,
    authenticate_connect,
)
from hubbub.auth.keys import KeyRing
from hubbub.core.connection import Connection
from hubbub.core.node import Node
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.transports.auth_log import log_auth_failure
from hubbub.transports.ws_close import ManagedWebSocketResponse
from hubbub.transports.ws_outbox import OutboxFactory, WebSocketOutbox

log = logging.getLogger(__name__)

# Slack over max_message_bytes for the JSON envelope around a payload the SDK measured alone
# (spec section 8.1, "size subtlety").
ENVELOPE_SLACK_BYTES = 1024


def accepted_frame_limit(max_message_bytes: int) -> int:
    """aiohttp's ``max_msg_size`` for frames of up to max_message_bytes + the slack, inclusive.

    aiohttp refuses a frame whose length *reaches* its limit, hence the + 1. 0 means uncapped.
    """
    return max_message_bytes + ENVELOPE_SLACK_BYTES + 1 if max_message_bytes else 0


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    max_message_bytes: int
    slow_consumer_bytes: int
    snapshot_delay_s: float
    keepalive_interval_s: float
    keepalive_timeout_s: float
    connect_attempts_per_ip: int
    connect_window_s: float


def connect_limiter(settings: WebSocketSettings) -> KeyedRateLimiter:
    """The per-IP upgrade limit (spec decision 9), shared by both ``/v1`` transports."""
    attempts = settings.connect_attempts_per_ip
    return KeyedRateLimiter(attempts, attempts / settings.connect_window_s)


class RealtimeEndpoint:
    """Handles ``GET /v1?key=…`` and ``GET /v1?token=…`` upgrades."""

    def __init__(
        self,
        node: Node,
        keys: KeyRing,
        settings: WebSocketSettings,
        trusted_proxies: TrustedProxies,
        connect_proxy: ConnectProxy | None = None,
        ip_limiter: KeyedRateLimiter | None = None,
    ) -> None:
        self._node = node
        self._connect_proxy = connect_proxy
        self._keys = keys
        self._settings = settings
        self._trusted = trusted_proxies
        self._ip_limiter = ip_limiter or connect_limiter(settings)
        self._outboxes = OutboxFactory(
            max_pending_bytes=settings.slow_consumer_bytes, pause_s=settings.snapshot_delay_s
        )
        self._handlers: set[asyncio.Task[object]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        if not self._ip_limiter.allow(ip, time.monotonic()):
            log.warning(
                "connect refused remote=%s: too many connection attempts (HTTP 429)",
                ip,
                extra={"event": "connect_refused", "remote": ip, "status": 429},
            )
            return web.Response(status=429, text="too_many_connections")
        attempt = ConnectAttempt(
            key=request.query.get("key"),
            token=request.query.get("token"),
            origin=request.headers.get("Origin"),
            remote_addr=ip,
            headers=request.headers,
            query=request.query,
        )
        outcome = await authenticate_connect(self._keys, attempt, time.time(), self._connect_proxy)
        if isinstance(outcome, HttpRejection):
            log_auth_failure(ip, outcome.body, status=outcome.status)
            return web.Response(status=outcome.status, text=outcome.body)
        settings = self._settings
        ws = ManagedWebSocketResponse(
            max_msg_size=accepted_frame_limit(settings.max_message_bytes),
            compress=False,
            heartbeat=settings.keepalive_interval_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="websocket upgrade required")
        await ws.prepare(request)
        outbox = self._outboxes.create(ws, request)
        if outbox is None:
            return ws
        if isinstance(outcome, CloseRejection):
            log_auth_failure(ip, outcome.reason, code=int(outcome.code))
            outbox.close(outcome.code, outcome.reason)
            await _close_finished(outbox)
            return ws
        fields = {"app": outcome.app_id, "peer": outcome.peer_id, "remote": ip}
        conn = await self._node.open_connection(outcome, outbox, remote_addr=ip)
        if conn is None:
            log.warning(
                "connect refused app=%s peer=%s remote=%s: over the app's connection limit "
                "(close 4010)",
                outcome.app_id,
                outcome.peer_id,
                ip,
                extra={"event": "connect_refused", "code": 4010, **fields},
            )
            await _close_finished(outbox)
            return ws
        log.info(
            "connection opened app=%s peer=%s remote=%s",
            outcome.app_id,
            outcome.peer_id,
            ip,
            extra={"event": "connection_opened", **fields},
        )
        release = _Release(self._node, conn)
        outbox.on_close_started = release.start
        try:
            await self._serve(ws, conn, release)
            if outbox.closing:
                await _close_finished(outbox)
        finally:
            release.start()  # the socket ended without a close procedure (a lost client)
            await release.finished()
            by = "client" if outbox.close_code is None else "server"
            code = ws.close_code if outbox.close_code is None else outbox.close_code
            log.info(
                "connection closed app=%s peer=%s remote=%s code=%s by=%s",
                outcome.app_id,
                outcome.peer_id,
                ip,
                code,
                by,
                extra={"event": "connection_closed", "code": code, "by": by, **fields},
            )
        return ws

    async def _serve(self, ws: web.WebSocketResponse, conn: Connection, release: _Release) -> None:
        """Hand frames to the node until the socket ends or a close starts (the procedure
        then owns the socket and aiohttp's iterator ends)."""
        node = self._node
        async for msg in ws:
            if release.started:
                break
            release.handling = True
            try:
                if msg.type is WSMsgType.TEXT:
                    await node.handle_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await node.handle_binary_frame(conn)
            finally:
                release.handling = False
            if release.deferred:
                release.start()
                break


async def _close_finished(outbox: WebSocketOutbox) -> None:
    """Wait for the close procedure to end (it is bounded by its own deadlines); if the
    handler is cancelled meanwhile (the end of shutdown), abort the socket."""
    try:
        await outbox.closed
    except asyncio.CancelledError:
        outbox.abort()
        raise


class _Release:
    """Releases a connection's presence, quota slot and subscriptions once, as soon as its
    close starts (spec decision 18), not when its socket finally goes.

    A close that starts while a frame is being handled (a subscribe awaiting the broker, say)
    releases right after that frame: releasing in the middle of it could let the frame finish
    by adding presence back for a connection that is already gone.
    """

    __slots__ = ("_conn", "_node", "_task", "deferred", "handling")

    def __init__(self, node: Node, conn: Connection) -> None:
        self._node = node
        self._conn = conn
        self._task: asyncio.Task[None] | None = None
        self.handling = False  # the serve loop is inside a frame's handling
        self.deferred = False  # a close started meanwhile: release after that frame

    @property
    def started(self) -> bool:
        return self._task is not None or self.deferred

    def start(self) -> None:
        if self._task is not None:
            return
        if self.handling:
            self.deferred = True
            return
        self.deferred = False
        self._task = asyncio.get_running_loop().create_task(self._node.close_connection(self._conn))

    async def finished(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)
