"""What the hub writes to: encoded frames and the per-connection sink a transport provides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class OutFrame:
    """One server frame's JSON bytes, plus its transport encoding computed once and shared.

    Fan-out hands the same OutFrame to every recipient, so the WebSocket framing (or any other
    transport's envelope) is built on first use and reused for all of them.
    """

    __slots__ = ("_encoder", "_wire", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._encoder: Callable[[bytes], bytes] | None = None
        self._wire = b""

    def wire(self, encoder: Callable[[bytes], bytes]) -> bytes:
        if self._encoder is not encoder:
            self._wire = encoder(self.payload)
            self._encoder = encoder
        return self._wire


class ConnectionSink(Protocol):
    """A connection's single outbound FIFO. Every frame for a connection goes through it."""

    def push(self, frame: OutFrame) -> None:
        """Queue a frame (never blocks, never awaits)."""

    def push_after_pause(self, frame: OutFrame) -> None:
        """Queue a frame that must reach the client in a *separate* read from what precedes
        it: flush what is queued, pause briefly, then continue with this frame. Frames pushed
        meanwhile queue behind it (spec section 13: ack, then snapshot)."""

    def close(self, code: int, reason: str) -> None:
        """Flush what is queued, then close with ``code``. Later pushes are dropped."""
