"""The one log line for a refused ``/v1`` credential, shared by both ``/v1`` transports (the
aiohttp endpoint and the lean socket) so operators grep for one event whichever serves them."""

from __future__ import annotations

import logging

# The /v1 endpoint's log lines keep their logger name whichever transport serves them.
log = logging.getLogger("hubbub.transports.websocket")


def log_auth_failure(
    ip: str, reason: str, *, status: int | None = None, code: int | None = None
) -> None:
    """One line per refused credential; the key, token and secret are never logged."""
    answer = f"HTTP {status}" if status is not None else f"close {code}"
    log.warning(
        "auth failed remote=%s: %s (%s)",
        ip,
        reason,
        answer,
        extra={
            "event": "auth_failed",
            "remote": ip,
            "reason": reason,
            "status": status,
            "code": code,
        },
    )
