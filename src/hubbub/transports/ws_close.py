"""The close procedure (:mod:`hubbub.protocol.close_procedure`) on an asyncio transport.

:class:`LingeringClose` performs the steps :class:`~hubbub.protocol.close_procedure.CloseProcedure`
decides: it writes the close frame, notices when the write buffer is empty, half-closes,
discards input until EOF, and closes or aborts at the deadline. It needs only an
:class:`asyncio.Transport`; input reaches it either through :meth:`LingeringClose.take_over`
(which puts a discarding protocol in front of the current one, as for aiohttp) or, for a
transport that owns its protocol, by calling :meth:`data_received` / :meth:`eof_received` /
:meth:`writing_resumed` / :meth:`connection_lost` itself.

:class:`ManagedWebSocketResponse` routes every close aiohttp itself would start (a client's
close frame, an oversized frame, a protocol error, the end of the handler) into the same
procedure, so aiohttp never writes a second close frame or closes a socket with unread input.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiohttp import web

from hubbub.protocol.close_procedure import ClosePhase, CloseProcedure, CloseStep, CloseTimeouts

log = logging.getLogger(__name__)


class ClosingOutbox(Protocol):
    """What a managed response needs of the outbox it hands its closes to
    (:class:`~hubbub.transports.ws_outbox.WebSocketOutbox`, which imports this module)."""

    @property
    def closed(self) -> asyncio.Future[None]: ...

    def close(self, code: int, reason: str, *, by_client: bool = False) -> None: ...


class LingeringClose:
    """One connection's close over ``transport``; :attr:`done` resolves when the socket is
    closed or aborted (or was lost)."""

    __slots__ = ("_loop", "_procedure", "_timer", "_transport", "done")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        timeouts: CloseTimeouts,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._procedure = CloseProcedure(timeouts)
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = loop.create_future()

    @property
    def started(self) -> bool:
        return self._procedure.phase is not ClosePhase.OPEN

    @property
    def discarded_bytes(self) -> int:
        return self._procedure.discarded_bytes

    def begin(self, code: int, reason: str, pending: bytes = b"") -> None:
        """Write ``pending`` (what was queued before the close) and the close frame, then
        follow the procedure. A second call does nothing."""
        frame = self._procedure.start(code, reason, self._loop.time())
        if frame is None:
            return
        transport = self._transport
        if transport.is_closing():
            self._finish()
            return
        transport.write(pending + frame if pending else frame)
        if transport.get_write_buffer_size() == 0:
            self._perform(self._procedure.output_drained(self._loop.time()))
        else:
            # Low and high water 0: the protocol hears resume_writing() exactly when the
            # buffer is empty, which is "the close frame is written".
            transport.set_write_buffer_limits(high=0, low=0)
        self._arm_timer()

    def take_over(self) -> None:
        """Put a discarding protocol in front of the transport's current one: from now on
        input is counted and dropped; the current protocol still hears connection_lost."""
        transport = self._transport
        current = transport.get_protocol()
        if isinstance(current, _DiscardingProtocol) or transport.is_closing():
            return
        transport.set_protocol(_DiscardingProtocol(self, current))
        # The old protocol may have paused reading (its queue was full); lingering must read.
        if not transport.is_reading():
            transport.resume_reading()

    def abort(self) -> None:
        """Give up now (the caller is being cancelled, e.g. at the end of shutdown)."""
        if not self.done.done():
            self._procedure.connection_lost()
            self._transport.abort()
            self._finish()

    # --- events from the transport ----------------------------------------------------------

    def data_received(self, byte_count: int) -> None:
        self._perform(self._procedure.input_received(byte_count))

    def eof_received(self) -> None:
        self._perform(self._procedure.input_ended())

    def writing_resumed(self) -> None:
        if self._transport.get_write_buffer_size() == 0:
            self._perform(self._procedure.output_drained(self._loop.time()))

    def connection_lost(self) -> None:
        self._procedure.connection_lost()
        self._finish()

    # --- steps ------------------------------------------------------------------------------

    def _perform(self, step: CloseStep) -> None:
        transport = self._transport
        if step is CloseStep.HALF_CLOSE:
            if transport.can_write_eof():
                transport.write_eof()
            self._arm_timer()
        elif step is CloseStep.CLOSE:
            transport.close()
            self._finish()
        elif step is CloseStep.ABORT:
            log.debug(
                "close deadline passed (code %s, %d bytes discarded); aborting",
                self._procedure.code,
                self._procedure.discarded_bytes,
            )
            transport.abort()
            self._finish()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._procedure.deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._perform(self._procedure.deadline_passed(self._loop.time()))
        if not self.done.done():
            self._arm_timer()  # fired a little early: wait for the rest

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.done.done():
            self.done.set_result(None)


class _DiscardingProtocol(asyncio.Protocol):
    """Stands in front of the transport's protocol while a close lingers."""

    def __init__(self, close: LingeringClose, inner: asyncio.BaseProtocol) -> None:
        self._close = close
        self._inner = inner

    def data_received(self, data: bytes) -> None:
        self._close.data_received(len(data))

    def eof_received(self) -> bool:
        self._close.eof_received()
        return True  # the procedure closes the transport itself

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
        self._close.writing_resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close.connection_lost()
        self._inner.connection_lost(exc)


class ManagedWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response, with every close it starts itself handed to the outbox's
    close procedure once :meth:`attach` has been called.

    Uses two aiohttp internals, kept here: ``_set_closed()`` (marks the response closed and
    stops its heartbeat, so aiohttp writes nothing after our close frame) and
    ``_pong_heartbeat`` (the keepalive grace).
    """

    _hubbub_outbox: ClosingOutbox | None = None

    def __init__(self, *, keepalive_timeout_s: float | None = None, **options: Any) -> None:
        super().__init__(**options)
        if keepalive_timeout_s is not None:
            # aiohttp waits heartbeat/2 for the pong; the protocol promises a fixed grace.
            self._pong_heartbeat = keepalive_timeout_s

    def attach(self, outbox: ClosingOutbox) -> None:
        self._hubbub_outbox = outbox

    def mark_closing(self) -> None:
        """The close procedure started: aiohttp must not write or read application frames."""
        self._set_closed()

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        outbox = self._hubbub_outbox
        if outbox is None:
            return await super().close(code=code, message=message, drain=drain)
        if self._closing:
            # The client's close frame (or its loss) came first: answer 1000, the one code
            # always valid to send back; the close is logged as the client's.
            outbox.close(1000, "", by_client=True)
        else:
            outbox.close(code, message.decode(errors="replace"))
        await outbox.closed
        return True
