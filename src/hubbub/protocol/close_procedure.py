"""How the server closes a WebSocket connection: one procedure, decided here, sans-I/O.

Every server-initiated close (rate limit 4011, oversize 1009, slow consumer 1008, shutdown
1001, kick 4020, expiry 4002, refusals 4001/4010, and the echo of a client's own close) goes
through the same steps (spec decisions 8 and 18; docs/realtime-protocol.md "Close procedure"):

1. **Start**: the connection stops handing application frames to the hub, and the hub releases
   everything it holds for it (presence, so others see ``left``; the app's connection slot;
   subscriptions) *now*, not when the socket finally dies.
2. **Send**: the close frame is queued behind whatever was already queued (a ``going_away``
   goes out before its 1001) and must leave the process within ``send_timeout_s``.
3. **Half-close**: once it is written, the write side is shut (TCP FIN), so the peer reads the
   close frame and then end-of-stream.
4. **Linger**: input is read and discarded until the peer's EOF, for at most ``linger_s``.
   Closing a socket with unread input makes the kernel send a reset, and a reset can destroy
   the close frame still in flight: the client would see 1006 instead of the code. Discarding
   keeps the receive buffer empty, so the final close is a clean FIN.
5. **End**: EOF -> close the socket; a deadline passed -> abort it (a client that never reads
   or never stops sending gets nothing more, and holds nothing).

:class:`CloseProcedure` is the decision logic: it takes events (with the time passed in) and
answers the :class:`CloseStep` the transport performs. A transport owns the socket, the timer
and the writing (:mod:`hubbub.transports.ws_close` for asyncio transports). It never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

# RFC 6455 section 5.5: a control frame's payload is at most 125 bytes (2 of them the code).
MAX_CLOSE_REASON_BYTES: Final = 123


class ClosePhase(Enum):
    OPEN = "open"  # not closing: application frames flow
    SENDING = "sending"  # the close frame is queued, not yet written out
    LINGERING = "lingering"  # written and half-closed; input discarded until EOF
    DONE = "done"  # the socket is closed or aborted (or was lost)


class CloseStep(Enum):
    """What the transport must do after an event."""

    NOTHING = "nothing"
    HALF_CLOSE = "half_close"  # shut the write side (the close frame is out)
    CLOSE = "close"  # everything is written and the input ended: close cleanly
    ABORT = "abort"  # a deadline passed: drop the socket now


@dataclass(frozen=True, slots=True)
class CloseTimeouts:
    # Spec decision 18: a close frame that cannot be written within 1 s gets the socket aborted.
    send_timeout_s: float = 1.0
    # After the half-close, how long a peer may take to end its side (or keep sending).
    linger_s: float = 2.0

    @property
    def worst_case_s(self) -> float:
        """The longest a close can take from its start: what shutdown waits at most."""
        return self.send_timeout_s + self.linger_s


DEFAULT_CLOSE_TIMEOUTS: Final = CloseTimeouts()


def encode_close_frame(code: int, reason: str) -> bytes:
    """An unmasked close frame (RFC 6455 section 5.5.1); the reason is cut to fit, on a
    character boundary."""
    raw = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
    payload = code.to_bytes(2, "big") + raw
    return bytes((0x88, len(payload))) + payload


class CloseProcedure:
    """The close of one connection, as a state machine over :class:`ClosePhase`."""

    __slots__ = (
        "_deadline",
        "_input_ended",
        "_timeouts",
        "code",
        "discarded_bytes",
        "phase",
        "reason",
    )

    def __init__(self, timeouts: CloseTimeouts | None = None) -> None:
        self._timeouts = timeouts or DEFAULT_CLOSE_TIMEOUTS
        self._deadline: float | None = None
        self._input_ended = False
        self.phase = ClosePhase.OPEN
        self.code: int | None = None
        self.reason = ""
        self.discarded_bytes = 0

    @property
    def reads_application_frames(self) -> bool:
        return self.phase is ClosePhase.OPEN

    @property
    def deadline(self) -> float | None:
        """When :meth:`deadline_passed` must be called (None: no timer needed)."""
        return self._deadline

    def start(self, code: int, reason: str, now: float) -> bytes | None:
        """Begin closing: the close frame to queue, or None when a close already began."""
        if self.phase is not ClosePhase.OPEN:
            return None
        self.phase = ClosePhase.SENDING
        self.code, self.reason = code, reason
        self._deadline = now + self._timeouts.send_timeout_s
        return encode_close_frame(code, reason)

    def output_drained(self, now: float) -> CloseStep:
        """Everything queued, close frame included, has been handed to the network."""
        if self.phase is not ClosePhase.SENDING:
            return CloseStep.NOTHING
        if self._input_ended:
            self._finish()
            return CloseStep.CLOSE
        self.phase = ClosePhase.LINGERING
        self._deadline = now + self._timeouts.linger_s
        return CloseStep.HALF_CLOSE

    def input_received(self, byte_count: int) -> CloseStep:
        """Input that arrived while closing: counted and discarded, never parsed."""
        if self.phase in (ClosePhase.SENDING, ClosePhase.LINGERING):
            self.discarded_bytes += byte_count
        return CloseStep.NOTHING

    def input_ended(self) -> CloseStep:
        """The peer shut its side (EOF). Nothing unread remains, so closing is clean."""
        self._input_ended = True
        if self.phase is ClosePhase.LINGERING:
            self._finish()
            return CloseStep.CLOSE
        return CloseStep.NOTHING  # still sending: the close frame goes out first

    def deadline_passed(self, now: float) -> CloseStep:
        if self._deadline is None or now < self._deadline or self.phase is ClosePhase.DONE:
            return CloseStep.NOTHING
        self._finish()
        return CloseStep.ABORT

    def connection_lost(self) -> None:
        self._finish()

    def _finish(self) -> None:
        self.phase = ClosePhase.DONE
        self._deadline = None
