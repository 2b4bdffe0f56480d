"""Malformed HTTP requests from clients: one concise, rate-limited WARNING, not a traceback.

aiohttp logs every request it cannot parse (oversized headers or URL, too many headers, bad
syntax) at ERROR with a full traceback on ``aiohttp.server``. Those are the client's fault,
and any unauthenticated client can send them in a loop to fill the log. The filter rewrites
such a record into one line (``bad HTTP request from <addr>: <status> <reason>``) and lets at
most one through per :data:`INTERVAL_S`, counting the ones it held back. Errors that are the
server's fault pass unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

AIOHTTP_SERVER_LOGGER: Final = "aiohttp.server"
INTERVAL_S: Final = 10.0
MAX_REASON_CHARS: Final = 120


class BadRequestLogFilter(logging.Filter):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._next_allowed = float("-inf")
        self._held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._next_allowed:
            self._held_back += 1
            return False
        self._next_allowed = now + INTERVAL_S
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = " ".join(str(exc.message).split())[:MAX_REASON_CHARS]
        held_back, self._held_back = self._held_back, 0
        more = f" ({held_back} more since the last such line)" if held_back else ""
        record.msg = "bad HTTP request from %s: %s %s%s"
        record.args = (remote, exc.code, reason, more)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        record.event = "bad_http_request"
        record.remote = remote
        record.status = exc.code
        return True


def install_bad_request_log_filter() -> None:
    """Once per process (a second call is a no-op)."""
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, BadRequestLogFilter) for f in logger.filters):
        logger.addFilter(BadRequestLogFilter())
