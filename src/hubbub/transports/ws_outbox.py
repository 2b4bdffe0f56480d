"""A WebSocket connection's outbound FIFO, written straight to the socket's transport.

Outbound frames bypass aiohttp's per-message ``send_str``: a server frame is unmasked, so its
WebSocket framing is identical for every recipient. :class:`WebSocketOutbox` takes the frame
bytes built once per fan-out (:meth:`OutFrame.wire`) and writes them to the transport; frames
queued for one connection in the same loop iteration are coalesced into one write. A
connection whose unsent bytes pass the high-water mark is closed as a slow consumer. Both the
realtime endpoint (``/v1``) and the conversation endpoint (``/ws``) write through it.

:meth:`WebSocketOutbox.close` is the one way a connection is closed by the server: it runs the
close procedure (:mod:`hubbub.protocol.close_procedure`, performed by
:class:`~hubbub.transports.ws_close.LingeringClose`), and calls the endpoint's
``on_close_started`` hook first, so the endpoint releases what the connection holds at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from aiohttp import web

from hubbub.core.outbound import OutFrame
from hubbub.protocol.close_procedure import DEFAULT_CLOSE_TIMEOUTS, CloseTimeouts
from hubbub.protocol.codes import SLOW_CONSUMER_REASON, CloseCode
from hubbub.transports.ws_close import LingeringClose, ManagedWebSocketResponse

log = logging.getLogger(__name__)


def encode_text_frame(payload: bytes) -> bytes:
    """An unmasked, final, text WebSocket frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


class OutboxFlusher:
    """Writes every outbox that got frames during this loop iteration, once, at its end."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[WebSocketOutbox] = []
        self._scheduled = False

    def mark(self, outbox: WebSocketOutbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()


class WebSocketOutbox:
    """One connection's outbound FIFO (implements :class:`~hubbub.core.outbound.ConnectionSink`)."""

    __slots__ = (
        "_close_timeouts",
        "_closer",
        "_closing",
        "_dirty",
        "_flusher",
        "_loop",
        "_max_pending_bytes",
        "_pause_handle",
        "_pause_s",
        "_queue",
        "_queued_bytes",
        "_segments",
        "_transport",
        "_ws",
        "close_code",
        "on_close_started",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        flusher: OutboxFlusher,
        loop: asyncio.AbstractEventLoop,
        *,
        max_pending_bytes: int,
        pause_s: float,
        close_timeouts: CloseTimeouts = DEFAULT_CLOSE_TIMEOUTS,
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._flusher = flusher
        self._loop = loop
        self._max_pending_bytes = max_pending_bytes
        self._pause_s = pause_s
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        # Frames behind pause points: each segment is written one pause after the previous.
        self._segments: deque[list[bytes]] = deque()
        self._pause_handle: asyncio.TimerHandle | None = None
        self._dirty = False
        self._closing = False
        # The code this side closed with (None: the client closed first), for the logs.
        self.close_code: int | None = None
        # Made when a close starts: an idle connection carries none of it.
        self._close_timeouts = close_timeouts
        self._closer: LingeringClose | None = None
        # Called once when a close starts, before the close frame is queued: the endpoint
        # releases presence, quota and subscriptions here (spec decision 18).
        self.on_close_started: Callable[[], None] | None = None

    def push(self, frame: OutFrame) -> None:
        if self._closing:
            return
        data = frame.wire(encode_text_frame)
        self._queued_bytes += len(data)
        if self._segments:
            self._segments[-1].append(data)
        else:
            self._queue.append(data)
            if not self._dirty:
                self._dirty = True
                self._flusher.mark(self)
        if self._max_pending_bytes and self._queued_bytes > self._max_pending_bytes:
            self._slow_consumer()

    def push_after_pause(self, frame: OutFrame) -> None:
        if self._closing:
            return
        data = frame.wire(encode_text_frame)
        self._queued_bytes += len(data)
        self._segments.append([data])
        if self._pause_handle is None:
            self._pause_handle = self._loop.call_later(self._pause_s, self._resume)

    def _resume(self) -> None:
        self._pause_handle = None
        if self._closing or not self._segments:
            return
        self._queue.extend(self._segments.popleft())
        if not self._dirty:
            self._dirty = True
            self._flusher.mark(self)
        if self._segments:
            self._pause_handle = self._loop.call_later(self._pause_s, self._resume)

    def flush(self) -> None:
        self._dirty = False
        queue = self._queue
        if not queue or self._closing:
            return
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._queued_bytes -= len(data)
        if self._transport.is_closing():
            return
        self._transport.write(data)
        if (
            self._max_pending_bytes
            and self._transport.get_write_buffer_size() > self._max_pending_bytes
        ):
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        # The connection's close line that follows names its app, peer and address.
        pending = self._queued_bytes + self._transport.get_write_buffer_size()
        log.warning(
            "closing a slow consumer (%d bytes pending; close 1008)",
            pending,
            extra={"event": "slow_consumer", "pending_bytes": pending},
        )
        self._queue.clear()
        self._segments.clear()
        self._queued_bytes = 0
        self.close(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER_REASON)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> asyncio.Future[None]:
        """Resolves when the socket is closed or aborted (the close procedure's end)."""
        return self._lingering_close().done

    def _lingering_close(self) -> LingeringClose:
        if self._closer is None:
            self._closer = LingeringClose(self._transport, self._loop, self._close_timeouts)
        return self._closer

    def close(self, code: int, reason: str, *, by_client: bool = False) -> None:
        """Start the close procedure (once): what is queued goes out, then the close frame.
        ``by_client``: the answer to the client's own close frame (logged as the client's)."""
        if self._closing:
            return
        self._closing = True
        if not by_client:
            self.close_code = code
        if self._pause_handle is not None:
            self._pause_handle.cancel()
            self._pause_handle = None
        while self._segments:
            self._queue.extend(self._segments.popleft())
        pending = b"".join(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        if isinstance(self._ws, ManagedWebSocketResponse):
            self._ws.mark_closing()
        hook, self.on_close_started = self.on_close_started, None
        if hook is not None:
            try:
                hook()
            except Exception:
                log.exception("releasing a closing connection failed")
        closer = self._lingering_close()
        closer.take_over()
        closer.begin(code, reason, pending)

    def abort(self) -> None:
        """Drop the socket now (the handler is being cancelled at the end of shutdown)."""
        self._closing = True
        self._lingering_close().abort()


class OutboxFactory:
    """Outboxes for prepared WebSocket responses, sharing one flusher per event loop."""

    def __init__(
        self,
        *,
        max_pending_bytes: int,
        pause_s: float,
        close_timeouts: CloseTimeouts = DEFAULT_CLOSE_TIMEOUTS,
    ) -> None:
        self._max_pending_bytes = max_pending_bytes
        self._pause_s = pause_s
        self._close_timeouts = close_timeouts
        self._flusher: OutboxFlusher | None = None

    def create(self, ws: web.WebSocketResponse, request: web.Request) -> WebSocketOutbox | None:
        """None when the request has no transport any more (the client already left)."""
        transport = request.transport
        if transport is None:
            return None
        loop = asyncio.get_running_loop()
        if self._flusher is None:
            self._flusher = OutboxFlusher(loop)
        outbox = WebSocketOutbox(
            ws,
            transport,
            self._flusher,
            loop,
            max_pending_bytes=self._max_pending_bytes,
            pause_s=self._pause_s,
            close_timeouts=self._close_timeouts,
        )
        if isinstance(ws, ManagedWebSocketResponse):
            ws.attach(outbox)
        return outbox
