"""The conversation WebSocket endpoint (``GET /ws``): JSON text frames both ways.

Outbound messages go through the same coalescing, backpressure-aware outbox as the realtime
endpoint, so a client that stops reading is closed as a slow consumer instead of growing
memory. Voice goes out base64-encoded inside ``send_ai_voice_chunk`` messages (spec section 4).
"""

from __future__ import annotations

import logging

from aiohttp import WSMsgType, web

from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.conversation.protocol.pushes import SendAiVoiceChunk, VoiceChunk, encode
from hubbub.conversation.session.channel import SessionFactory, TransportKind
from hubbub.core.outbound import OutFrame
from hubbub.protocol.codes import CloseCode
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

    def close(self) -> None:
        log.warning(
            "conversation client remote=%s: too many authentication attempts; closing",
            self._ip,
            extra={"event": "auth_rate_limited", "transport": "websocket", "remote": self._ip},
        )
        self._outbox.close(CloseCode.POLICY_VIOLATION, "too many authentication attempts")


class ConversationEndpoint:
    def __init__(
        self,
        sessions: SessionFactory,
        trusted_proxies: TrustedProxies,
        *,
        max_message_bytes: int,
        slow_consumer_bytes: int,
        keepalive_interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._trusted = trusted_proxies
        self._max_message_bytes = max_message_bytes
        self._keepalive_interval_s = keepalive_interval_s
        self._outboxes = OutboxFactory(max_pending_bytes=slow_consumer_bytes, pause_s=0.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        ws = web.WebSocketResponse(
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
        session = self._sessions.open_session(WebSocketClientChannel(outbox, ip))
        log.info(
            "conversation connection opened remote=%s",
            ip,
            extra={"event": "conversation_opened", "transport": "websocket", "remote": ip},
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await session.handle_message(message.data)
                elif message.type is WSMsgType.BINARY:
                    # The protocol is JSON text; a binary frame is decoded the same way, so a
                    # client gets "Invalid JSON" rather than silence.
                    await session.handle_message(message.data)
        finally:
            await session.closed()
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
