"""A ``/v1`` WebSocket connection on a plain ``asyncio.Protocol``: the lean transport.

:class:`RealtimeSocket` is the whole connection in one slotted object: the upgrade (per-IP
limit, credentials, Origin: the same checks and answers as ``transports.websocket``), the
frames (``protocol.websocket``'s reader, handled in ``data_received``), and the outbound FIFO
core writes to (it is the connection's :class:`~hubbub.core.outbound.ConnectionSink`).

* No task and no timer while idle: keepalive is a shared wheel; a frame's handling runs
  inline and gets a task only if it suspends (reading pauses meanwhile, so frames stay in
  order).
* Writes: a frame goes straight to the transport when nothing is queued; more frames in the
  same loop iteration are coalesced (``WriteFlusher``). While the transport is paused (its
  buffer is full) frames queue; past ``slow_consumer_bytes`` the connection is closed 1008.
* Closes this side starts (the node's, a protocol violation's) follow the close procedure
  of ``protocol.close_procedure``: release the node's state at once, send the close frame
  behind what is queued, half-close, then read and drop input (unparsed) until the peer's
  EOF, aborting at a deadline: closing with unread input would send a reset and the peer
  would lose the close code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from hubbub.auth.client_ip import client_ip
from hubbub.auth.connect import (
    AuthOutcome,
    CloseRejection,
    ConnectAttempt,
    HttpRejection,
    authenticate,
    authenticate_connect,
)
from hubbub.core.connection import Connection
from hubbub.protocol.codes import SLOW_CONSUMER_REASON, CloseCode
from hubbub.protocol.websocket import (
    CLOSE_NO_STATUS,
    OP_PONG,
    PING_FRAME,
    Close,
    FrameReader,
    Message,
    Ping,
    UpgradeRefusal,
    Violation,
    accept_response,
    close_frame,
    encode_frame,
    http_response,
    parse_upgrade,
)
from hubbub.transports.auth_log import log_auth_failure
from hubbub.transports.realtime_outbox import (
    CLOSED,
    CLOSING,
    OPEN,
    OPENING,
    UPGRADING,
    RealtimeOutbox,
)
from hubbub.transports.realtime_shared import (
    LINGER_S,
    SLOW_CONSUMER_LINGER_S,
    RealtimeShared,
)

# The /v1 endpoint's log lines keep their logger name whichever transport serves them.
log = logging.getLogger("hubbub.transports.websocket")

_ABNORMAL = 1006  # the code logged when the TCP connection ended without a close frame
_DEFAULT_HIGH_WATER = 65536


class RealtimeSocket(RealtimeOutbox):
    __slots__ = (
        "_busy",
        "_close_code",
        "_conn",
        "_heard",
        "_ip",
        "_keepalive_slot",
        "_linger_slot",
        "_peer_code",
        "_pinged",
        "_reader",
        "_release_due",
    )

    def __init__(self, shared: RealtimeShared) -> None:
        super().__init__(shared)
        self._reader = FrameReader(shared.settings.max_message_bytes)
        self._conn: Connection | None = None
        self._ip = ""
        self._busy = False  # a frame's (or the upgrade's) handling is suspended
        self._release_due = False  # release the node's state once that handling completes
        self._heard = True
        self._pinged = False
        self._keepalive_slot: int | None = None
        self._linger_slot: int | None = None
        self._close_code: int | None = None  # the code this side closed with
        self._peer_code: int | None = None  # the code the peer closed with

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        limit = self._shared.settings.slow_consumer_bytes
        if 0 < limit < _DEFAULT_HIGH_WATER:
            # Pause (and so check the limit) before the transport's buffer passes it.
            self._transport.set_write_buffer_limits(high=limit // 2)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._state == UPGRADING:
            self._upgrade(data)
            return
        if self._state != OPEN and self._state != OPENING:
            return  # closing: input is read and dropped until the peer's EOF (see the module)
        self._reader.feed(data)
        if not self._busy:
            self._read_frames()

    def eof_received(self) -> bool | None:
        self._end()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        shared = self._shared
        if self._linger_slot is not None:
            shared.lingering.remove(self, self._linger_slot)
            self._linger_slot = None
        shared.close_ended(self)
        self._transport = None
        self._state = CLOSED

    # --- the upgrade ----------------------------------------------------------------------

    def _upgrade(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        end = data.find(b"\r\n\r\n")  # the listener handed over a complete head
        request = parse_upgrade(data[:end])
        shared = self._shared
        peer = transport.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) else None
        if isinstance(request, UpgradeRefusal):
            self._refuse(request.status, request.body)
            return
        ip = self._ip = client_ip(remote, request.forwarded_for, shared.trusted)
        if not shared.ip_limiter.allow(ip, time.monotonic()):  # the aiohttp path's clock
            log.warning(
                "connect refused remote=%s: too many connection attempts (HTTP 429)",
                ip,
                extra={"event": "connect_refused", "remote": ip, "status": 429},
            )
            self._refuse(429, "too_many_connections")
            return
        self._state = OPENING
        rest = data[end + 4 :]
        if rest:
            self._reader.feed(rest)
        query = request.query
        attempt = ConnectAttempt(
            key=query.get("key"),
            token=query.get("token"),
            origin=request.origin,
            remote_addr=ip,
            headers=request.headers,
            query=query,
        )
        key = request.key
        if shared.proxy is None:
            self._authenticated(
                authenticate(shared.keys, attempt.key, attempt.token, attempt.origin, shared.now()),
                key,
            )
            return
        self._hold()
        # A connect proxy's HTTP call needs a task of its own (its timeout does).
        shared.drive(
            authenticate_connect(shared.keys, attempt, shared.now(), shared.proxy),
            lambda outcome: self._resume_after(lambda: self._authenticated(outcome, key)),
            self._failed,
            inline=False,
        )

    def _refuse(self, status: int, body: str) -> None:
        transport = self._transport
        self._state = CLOSED
        if transport is not None:
            transport.write(http_response(status, body))
            transport.close()

    def _authenticated(self, outcome: AuthOutcome, key: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        ip = self._ip
        if isinstance(outcome, HttpRejection):
            log_auth_failure(ip, outcome.body, status=outcome.status)
            self._refuse(outcome.status, outcome.body)
            return
        # The 101 waits for the end of the iteration so the welcome joins it in one write.
        accept = accept_response(key)
        self._pending = [accept]
        self._pending_bytes += len(accept)
        self._shared.flusher.mark(self)
        if isinstance(outcome, CloseRejection):
            log_auth_failure(ip, outcome.reason, code=int(outcome.code))
            self._start_close(outcome.code, outcome.reason)
            return
        shared = self._shared
        task = shared.drive(
            shared.node.open_connection(outcome, self, remote_addr=ip), self._opened, self._failed
        )
        if task is not None:
            self._hold()
            task.add_done_callback(lambda _: self._resume_after(None))

    def _opened(self, conn: Connection | None) -> None:
        if conn is None:
            principal_note = "over the app's connection limit (close 4010)"
            log.warning(
                "connect refused remote=%s: %s",
                self._ip,
                principal_note,
                extra={"event": "connect_refused", "code": 4010, "remote": self._ip},
            )
            return
        self._conn = conn
        log.info(
            "connection opened app=%s peer=%s remote=%s",
            conn.app_id,
            conn.peer_id,
            self._ip,
            extra={"event": "connection_opened", **self._fields()},
        )
        if self._state != OPENING:  # closed meanwhile (the peer left, or the node closed it)
            self._release()
            return
        self._state = OPEN
        shared = self._shared
        self._keepalive_slot = shared.keepalive.add(
            self, shared.loop.time() + shared.settings.keepalive_interval_s
        )
        if not self._busy:
            self._read_frames()

    def _fields(self) -> dict[str, object]:
        conn = self._conn
        assert conn is not None
        return {"app": conn.app_id, "peer": conn.peer_id, "remote": self._ip}

    # --- frames in ------------------------------------------------------------------------

    def _hold(self) -> None:
        self._busy = True
        if self._transport is not None:
            self._transport.pause_reading()

    def _resume_after(self, then: object) -> None:
        """A suspended handling completed: run ``then`` (a callable or None), read on."""
        self._busy = False
        if callable(then):
            then()
            if self._busy:  # that started another suspended handling
                return
        if self._release_due:
            self._release_due = False
            self._release()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
        if self._state == OPEN and not self._busy:
            self._read_frames()

    def _read_frames(self) -> None:
        reader = self._reader
        node = self._shared.node
        while not self._busy and self._state == OPEN:
            event = reader.next_event()
            if event is None:
                return
            if isinstance(event, Message):
                conn = self._conn
                assert conn is not None
                if event.text:
                    coro = node.handle_frame(conn, event.payload)
                else:
                    coro = node.handle_binary_frame(conn)
                task = self._shared.drive(coro, _ignore, self._failed)
                if task is not None:
                    self._hold()
                    task.add_done_callback(lambda _: self._resume_after(None))
            elif isinstance(event, Ping):
                self._write_control(encode_frame(event.payload, OP_PONG))
            elif isinstance(event, Close):
                self._peer_closed(event)
                return
            elif isinstance(event, Violation):
                self._start_close(event.close_code, event.reason)
                return
            # Pong: hearing from the peer is all the keepalive needs.

    def _peer_closed(self, event: Close) -> None:
        transport = self._transport
        if self._state == OPEN:
            self._peer_code = event.code
            code = 1000 if event.code == CLOSE_NO_STATUS else event.code
            self.flush_all(close_frame(code))
        self._end()
        if transport is not None:
            transport.close()

    # --- closing --------------------------------------------------------------------------

    def _start_close(self, code: int, reason: str, linger_s: float = LINGER_S) -> None:
        """This side closes: queued frames, the close frame, then linger (see the module)."""
        if self._state >= CLOSING:
            return
        opening = self._state == OPENING
        self._state = CLOSING
        self._close_code = code
        transport = self._transport
        shared = self._shared
        self.flush_all(close_frame(code, reason))
        self._reader.discard()  # nothing the peer sends from here on is handled
        if transport is not None:
            # The write side ends after the close frame (a FIN once it is out): the peer reads
            # the code, then end-of-stream, and ends its side; its input is dropped meanwhile
            # (no parsing: a flood must not cost frame handling) until that EOF or the deadline.
            if transport.can_write_eof():
                transport.write_eof()
            shared.closing.add(self)
            self._linger_slot = shared.lingering.add(self, shared.loop.time() + linger_s)
        self._forget_keepalive()
        if not opening or self._conn is not None:
            # Not nested inside the node's own call that closed us (a fan-out loop, a frame).
            shared.loop.call_soon(self._release)

    def _slow_consumer(self, pending: int) -> None:
        # The connection's close line that follows names its app, peer and address.
        log.warning(
            "closing a slow consumer (%d bytes pending; close 1008)",
            pending,
            extra={"event": "slow_consumer", "pending_bytes": pending},
        )
        self._pending, self._segments, self._pending_bytes = None, None, 0
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        conn = self._conn
        if conn is not None and not conn.closing:
            conn.closing = True
            self._shared.node.stats.closes[CloseCode.POLICY_VIOLATION] += 1
        self._start_close(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER_REASON, SLOW_CONSUMER_LINGER_S)

    def linger_over(self) -> None:
        """The peer did not answer the close in time: drop the connection."""
        self._linger_slot = None
        if self._transport is not None:
            self._transport.abort()

    def keepalive_check(self) -> None:
        self._keepalive_slot = None
        transport = self._transport
        if transport is None or self._state != OPEN:
            return
        shared = self._shared
        now = shared.loop.time()
        if self._heard:
            self._heard, self._pinged = False, False
            delay = shared.settings.keepalive_interval_s
        elif not self._pinged:
            self._pinged = True
            self._write_control(PING_FRAME)
            delay = shared.settings.keepalive_timeout_s
        else:
            # Silent through a whole interval and the ping's grace: the peer is gone.
            self._end()
            transport.abort()
            return
        self._keepalive_slot = shared.keepalive.add(self, now + delay)

    def _forget_keepalive(self) -> None:
        if self._keepalive_slot is not None:
            self._shared.keepalive.remove(self, self._keepalive_slot)
            self._keepalive_slot = None

    def _end(self) -> None:
        """The peer closed, or the TCP connection ended: release what is still held."""
        if self._state == CLOSED:
            return
        self._forget_keepalive()
        self._release()
        self._state = CLOSED
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        self._pending, self._segments = None, None

    def _release(self) -> None:
        """Hand the connection back to the node (once), and log its close line."""
        conn = self._conn
        if conn is None:
            return
        if self._busy:
            self._release_due = True
            return
        self._conn = None
        by = "client" if self._close_code is None else "server"
        code = self._close_code if self._close_code is not None else self._peer_code
        log.info(
            "connection closed app=%s peer=%s remote=%s code=%s by=%s",
            conn.app_id,
            conn.peer_id,
            self._ip,
            code if code is not None else _ABNORMAL,
            by,
            extra={
                "event": "connection_closed",
                "code": code if code is not None else _ABNORMAL,
                "by": by,
                "app": conn.app_id,
                "peer": conn.peer_id,
                "remote": self._ip,
            },
        )
        self._shared.drive(self._shared.node.close_connection(conn), _ignore, _ignore)

    def _failed(self) -> None:
        """An unexpected error (logged): drop the connection rather than leave it hanging."""
        transport = self._transport
        self._end()
        if transport is not None:
            transport.abort()


def _ignore(*_: object) -> None:
    pass
