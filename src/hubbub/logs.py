"""Process logging for ``hubbub serve``: a text or a JSON format (one object per line).

Call sites log with the standard library and pass the event's fields as ``extra``
(``log.info("connection opened app=%s ...", ..., extra={"app": ..., ...})``): the text format
shows the message, the JSON format adds every extra field as a top-level key, so a log
collector can filter on ``event``, ``app``, ``peer``, ``remote``, ``code`` without parsing text.
No secret is ever passed as a field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from typing import Any, Final, Literal, TextIO

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS: Final = ("text", "json")
LogFormat = Literal["text", "json"]

# Libraries that log every ICE candidate pair and DTLS step at INFO: quiet unless DEBUG.
CHATTY_LIBRARIES: Final = ("aioice", "aiortc")

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))).union(
    {"message", "asctime", "taskName"}
)


def _timestamp(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", <extra fields>..., "exception"?}``"""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_format: LogFormat = "text"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours (so a second configure replaces it); without a stream it writes to whatever
    ``sys.stderr`` is at the time, never to a stream that was swapped out and closed.

    Lines logged on the event loop's thread are written together at the end of the loop
    iteration (one write for all of them, not a system call and a reader's wake-up per
    line; the connect path logs two lines per connection). Elsewhere (other threads, no
    running loop) each line is written at once, after any batch; ``flush`` (logging's
    shutdown too) writes the batch.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream
        self._batch: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is threading.main_thread():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                try:
                    line = self.format(record)
                except Exception:
                    self.handleError(record)
                    return
                if not self._batch:
                    loop.call_soon(self._write_batch)
                self._batch.append(line)
                return
        self._write_batch()
        self.stream = self._fixed or sys.stderr
        super().emit(record)

    def _write_batch(self) -> None:
        # Under the handler's lock (re-entrant: emit already holds it), as emit is: a line
        # logged from another thread meanwhile is written after the batch, never lost.
        with self.lock:  # type: ignore[union-attr]
            if not self._batch:
                return
            lines, self._batch = self._batch, []
            stream = self.stream = self._fixed or sys.stderr
            try:
                stream.write(self.terminator.join(lines) + self.terminator)
                stream.flush()
            except Exception:  # a closed stream: as logging.Handler.handleError would, go on
                pass

    def flush(self) -> None:
        self._write_batch()
        super().flush()


def configure(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Root logging for the process. Like :func:`logging.basicConfig`, it leaves alone a root
    logger that someone else has already given handlers (a program embedding Hubbub, a test
    runner), unless a ``stream`` is given explicitly."""
    global _format
    _format = log_format
    root = logging.getLogger()
    foreign = [h for h in root.handlers if not isinstance(h, _Handler)]
    if foreign and stream is None:
        return
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level)
    for library in CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def announce(line: str, **fields: Any) -> None:
    """A line for the person who started the server (listening address, demo keys): printed
    on stdout whatever the level, in the chosen format."""
    if _format == "json":
        entry = {
            "time": _timestamp(time.time()),
            "level": "INFO",
            "logger": "hubbub",
            "message": line,
            **fields,
        }
        print(json.dumps(entry, ensure_ascii=False), flush=True)
    else:
        print(line, flush=True)
