"""The outbound half of a lean ``/v1`` connection: core's ConnectionSink on a transport.

:class:`RealtimeOutbox` is the base of ``realtime_socket.RealtimeSocket`` (one object per
connection, so the split costs nothing per connection): it owns the frames written to the
peer. A frame goes straight to the transport when nothing is queued and the connection wrote
nothing yet in this loop iteration; otherwise it is queued and the shared ``WriteFlusher``
writes the queue once at the iteration's end (in a burst, from the first frame). Frames pushed
after a pause point (``push_after_pause``) wait for it. While the transport is paused (its
buffer is full) frames queue; past ``slow_consumer_bytes`` (queued plus buffered) the
connection's ``_slow_consumer`` closes it.
"""

from __future__ import annotations

import asyncio

from hubbub.core.outbound import OutFrame
from hubbub.protocol.websocket import encode_frame
from hubbub.transports.realtime_shared import RealtimeShared

UPGRADING, OPENING, OPEN, CLOSING, CLOSED = range(5)


class RealtimeOutbox(asyncio.Protocol):
    __slots__ = (
        "_pause",
        "_paused",
        "_pending",
        "_pending_bytes",
        "_segments",
        "_shared",
        "_state",
        "_transport",
        "_wrote_epoch",
    )

    def __init__(self, shared: RealtimeShared) -> None:
        self._shared = shared
        self._transport: asyncio.Transport | None = None
        self._state = UPGRADING
        self._pending: list[bytes] | None = None  # frames waiting for the end of the iteration
        self._pending_bytes = 0
        # Frames behind pause points (push_after_pause): each segment one pause after the last.
        self._segments: list[list[bytes]] | None = None
        self._pause: asyncio.TimerHandle | None = None
        self._paused = False  # the transport asked us to stop writing
        self._wrote_epoch = -1

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pending is not None and self._state != CLOSED:
            self.flush()

    def push(self, frame: OutFrame) -> None:
        if self._state >= CLOSING:
            return
        data = frame.wire(encode_frame)
        segments = self._segments
        if segments is not None:
            segments[-1].append(data)
            self._pending_bytes += len(data)
            self._check_pending()
            return
        pending = self._pending
        flusher = self._shared.flusher
        if pending is not None:
            pending.append(data)
            self._pending_bytes += len(data)
            if self._state == OPEN:  # (the welcome joining the 101 is no burst)
                flusher.coalesced = True
            self._check_pending()
            return
        if self._paused or flusher.queueing or self._wrote_epoch == flusher.epoch:
            if self._wrote_epoch == flusher.epoch:
                flusher.coalesced = True
            self._pending = [data]
            self._pending_bytes += len(data)
            if not self._paused:
                flusher.mark(self)
            self._check_pending()
            return
        transport = self._transport
        if transport is None:
            return
        transport.write(data)
        self._wrote_epoch = flusher.epoch
        flusher.wrote()

    def push_after_pause(self, frame: OutFrame) -> None:
        if self._state >= CLOSING:
            return
        data = frame.wire(encode_frame)
        self._pending_bytes += len(data)
        if self._segments is None:
            self._segments = [[data]]
        else:
            self._segments.append([data])
        if self._pause is None:
            self._pause = self._shared.loop.call_later(
                self._shared.settings.snapshot_delay_s, self._end_pause
            )

    def _end_pause(self) -> None:
        self._pause = None
        segments = self._segments
        if segments is None or self._state >= CLOSING:
            return
        self._queue(segments.pop(0))
        if segments:
            self._pause = self._shared.loop.call_later(
                self._shared.settings.snapshot_delay_s, self._end_pause
            )
        else:
            self._segments = None

    def _queue(self, frames: list[bytes]) -> None:
        if self._pending is None:
            self._pending = frames
            if not self._paused:
                self._shared.flusher.mark(self)
        else:
            self._pending.extend(frames)

    def flush(self) -> None:
        """Write what is queued (the flusher's end of iteration, or the transport resumed)."""
        pending = self._pending
        transport = self._transport
        if pending is None or self._paused or transport is None:
            return
        self._pending = None
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending_bytes -= len(data)
        if transport.is_closing():
            return
        transport.write(data)
        if self._paused:
            self._check_pending()

    def flush_all(self, last: bytes = b"") -> None:
        """Everything queued, pause points included, and then ``last``, in one write now."""
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        segments, self._segments = self._segments, None
        for segment in segments or ():
            self._queue(segment)
        pending, self._pending = self._pending or [], None
        self._pending_bytes = 0
        if last:
            pending.append(last)
        transport = self._transport
        if pending and transport is not None and not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _check_pending(self) -> None:
        limit = self._shared.settings.slow_consumer_bytes
        if not limit:
            return
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        pending = self._pending_bytes + buffered
        if pending <= limit or self._state >= CLOSING:
            return
        self._slow_consumer(pending)

    def _write_control(self, frame: bytes) -> None:
        # After whatever is queued, so the stream stays in order.
        if self._pending is not None:
            self._pending.append(frame)
        elif self._transport is not None:
            self._transport.write(frame)

    def close(self, code: int, reason: str) -> None:
        self._start_close(code, reason)

    # --- what the connection provides ---------------------------------------------------

    def _start_close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def _slow_consumer(self, pending: int) -> None:
        raise NotImplementedError
