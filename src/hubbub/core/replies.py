"""What the node answers a client's request with: ``error`` and ``ack`` frames, counted."""

from __future__ import annotations

from hubbub.core.connection import Connection
from hubbub.core.outbound import OutFrame
from hubbub.core.stats import NodeStats
from hubbub.protocol import frames
from hubbub.protocol.codes import ERROR_MESSAGES, ErrorCode


def refusal_detail(code: ErrorCode, channel: str) -> str | None:
    # The hosted service names the channel it refused (spec 3.3 example).
    return f"not authorized: {channel}" if code is ErrorCode.CHANNEL_NOT_AUTHORIZED else None


class Replies:
    def __init__(self, stats: NodeStats) -> None:
        self._stats = stats

    def error(
        self, conn: Connection, code: ErrorCode, request_id: str | None, message: str | None = None
    ) -> None:
        text = message or ERROR_MESSAGES[code]
        self._stats.errors[code.value] += 1
        conn.frames_out += 1
        conn.sink.push(OutFrame(frames.error(code, text, request_id)))

    def verdict(self, conn: Connection, code: str, request_id: str | None) -> None:
        """A backend's refusal: its code may be one the protocol does not define."""
        try:
            self.error(conn, ErrorCode(code), request_id)
            return
        except ValueError:
            pass
        self._stats.errors[code] += 1
        conn.frames_out += 1
        conn.sink.push(OutFrame(frames.error(code, "refused by the backend", request_id)))

    def ack(
        self, conn: Connection, request_id: str | None, fields: dict[str, object] | None = None
    ) -> None:
        if request_id is not None:
            payload = frames.ack_with(request_id, fields) if fields else frames.ack(request_id)
            conn.frames_out += 1
            conn.sink.push(OutFrame(payload))
