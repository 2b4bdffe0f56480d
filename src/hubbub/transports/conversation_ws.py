"""The conversation WebSocket endpoint (``GET /ws``): JSON text frames both ways.

Outbound messages go through the same coalescing, backpressure-aware outbox as the realtime
endpoint, so a client that stops reading is closed as a slow consumer instead of growing
memory. Voice goes out base64-encoded inside ``send_ai_voice_chunk`` messages (spec section 4).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web

from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.conversation.protocol.pushes import SendAiVoiceChunk, VoiceChunk, encode
from hubbub.conversation.session.channel import (
    GOING_AWAY,
    CloseReason,
    SessionFactory,
    SessionHandler,
    TransportKind,
)
from hubbub.core.outbound import OutFrame
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.transports.ws_close import ManagedWebSocketResponse
from hubbub.transports.ws_outbox import OutboxFactory, WebSocketOutbox

log = logging.getLogger(__name__)


class WebSocketClientChannel:
    """:class:`~hubbub.conversation.session.channel.ClientChannel` over one aiohttp WebSocket."""

    def __init__(self, outbox: WebSocketOutbox, ip: str) -> None:
        self._outbox = outbox
        self._ip = ip

    @property
    def kind(self) -> TransportKind:
        return "websocket"

    @property
    def client_ip(self) -> str:
        return self._ip

    def send_message(self, message: bytes) -> None:
        self._outbox.push(OutFrame(message))

    def send_voice(self, chunk: VoiceChunk) -> None:
        self.send_message(encode(SendAiVoiceChunk.of(chunk)))

    # Voice and control share one ordered socket: turns need no tracking here.

    def start_output_turn(self, output_turn_id: str, message: bytes) -> None:
        self.send_message(message)

    def end_output_turn(self, output_turn_id: str, message: bytes, *, aborted: bool) -> None:
        self.send_message(message)

    async def voice_sent(self, output_turn_id: str) -> None:
        pass  # already queued ahead of anything sent next, on the one FIFO socket

    def hold_voice(self, held: bool) -> None:
        pass  # the client was sent the audio faster than real time: it plays what it holds

    def input_turn_opened(self, input_turn_id: str) -> None:
        pass

    def input_turn_closed(self, input_turn_id: str) -> None:
        pass

    def close(self, why: CloseReason) -> None:
        if why is not GOING_AWAY:
            log.warning(
                "conversation client remote=%s: %s; closing (%d)",
                self._ip,
                why.reason,
                why.code,
                extra={
                    "event": "conversation_refused",
                    "transport": "websocket",
                    "remote": self._ip,
                    "reason": why.reason,
                    "code": why.code,
                },
            )
        self._outbox.close(why.code, why.reason)


TOO_MANY_CONNECTION_ATTEMPTS = {"error": "Too many connection attempts from this address"}


class ConversationEndpoint:
    def __init__(
        self,
        sessions: SessionFactory,
        trusted_proxies: TrustedProxies,
        *,
        max_message_bytes: int,
        slow_consumer_bytes: int,
        keepalive_interval_s: float,
        connect_limiter: KeyedRateLimiter | None = None,
        shutdown_grace_s: float = 2.0,
    ) -> None:
        self._sessions = sessions
        self._trusted = trusted_proxies
        self._max_message_bytes = max_message_bytes
        self._keepalive_interval_s = keepalive_interval_s
        self._outboxes = OutboxFactory(max_pending_bytes=slow_consumer_bytes, pause_s=0.0)
        # Shared with the WebRTC offers: upgrades per client IP (spec section 11).
        self._connect_limiter = connect_limiter
        self._shutdown_grace_s = shutdown_grace_s
        self._open: dict[WebSocketClientChannel, tuple[SessionHandler, asyncio.Future[None]]] = {}

    async def close_all(self) -> None:
        """Graceful shutdown: close every connection with 1001 (each session ends its live
        turn and lets go of its conversation, which stays resumable), and wait a bounded time
        for the close handshakes."""
        done = [finished for _, finished in self._open.values()]
        for channel, (session, _) in list(self._open.items()):
            session.going_away()
            channel.close(GOING_AWAY)
        if done:
            await asyncio.wait(done, timeout=self._shutdown_grace_s)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        limiter = self._connect_limiter
        if limiter is not None and not limiter.allow(ip, time.monotonic()):
            log.warning(
                "conversation connect refused remote=%s: too many connection attempts (HTTP 429)",
                ip,
                extra={"event": "connect_refused", "transport": "websocket", "remote": ip},
            )
            return web.json_response(TOO_MANY_CONNECTION_ATTEMPTS, status=429)
        ws = ManagedWebSocketResponse(
            max_msg_size=self._max_message_bytes,
            compress=False,
            heartbeat=self._keepalive_interval_s,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="websocket upgrade required")
        await ws.prepare(request)
        outbox = self._outboxes.create(ws, request)
        if outbox is None:
            return ws
        channel = WebSocketClientChannel(outbox, ip)
        finished = asyncio.get_running_loop().create_future()
        session = self._sessions.open_session(channel)
        self._open[channel] = (session, finished)
        log.info(
            "conversation connection opened remote=%s",
            ip,
            extra={"event": "conversation_opened", "transport": "websocket", "remote": ip},
        )
        try:
            async for message in ws:
                if outbox.closing:
                    break  # the close procedure owns the socket now
                if message.type is WSMsgType.TEXT:
                    await session.handle_message(message.data)
                elif message.type is WSMsgType.BINARY:
                    # The protocol is JSON text; a binary frame is decoded the same way, so a
                    # client gets "Invalid JSON" rather than silence.
                    await session.handle_message(message.data)
            if outbox.closing:
                try:
                    await outbox.closed  # bounded by the close procedure's deadlines
                except asyncio.CancelledError:
                    outbox.abort()
                    raise
        finally:
            try:
                await session.closed()
            finally:
                del self._open[channel]
                finished.set_result(None)
            code = ws.close_code if outbox.close_code is None else outbox.close_code
            log.info(
                "conversation connection closed remote=%s code=%s",
                ip,
                code,
                extra={
                    "event": "conversation_closed",
                    "transport": "websocket",
                    "remote": ip,
                    "code": code,
                },
            )
        return ws
