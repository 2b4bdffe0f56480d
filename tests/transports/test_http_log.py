"""Malformed requests from unauthenticated clients leave at most a concise WARNING line in
the log, never an ERROR traceback (issue 11), and the server keeps answering."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hubbub.transports.http_log import INTERVAL_S, BadRequestLogFilter
from tests.api.conftest import api_client, serve

pytestmark = pytest.mark.integration

BAD_REQUESTS = [
    ("/v1/usage", "X-Big: " + "a" * 100_000),
    (f"/v1?key=pk_live_acme&pad={'p' * 20_000}", "X: y"),
    ("/v1/usage", "\r\n".join(f"X-{i}: y" for i in range(500))),
    ("/v1?key=pk_live_acme", "Upgrade: websocket\r\nX-Big: " + "b" * 50_000),
]


async def _send_raw(port: int, path: str, headers: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(64), 10)
    finally:
        writer.close()


async def test_oversized_headers_log_one_concise_warning_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve() as served, api_client(served) as api:
        port = served.server.port
        assert port is not None
        for _ in range(5):
            for path, headers in BAD_REQUESTS:
                assert (await _send_raw(port, path, headers)).startswith(b"HTTP/1.")
        assert (await api.call("GET", "/v1/usage")).status == 200
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r for r in records if r.levelno >= logging.ERROR or r.exc_info] == []
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    line = warnings[0].getMessage()
    assert line.startswith("bad HTTP request from 127.0.0.1: 400 ")
    assert len(line) < 250 and "\n" not in line


def test_the_filter_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    log_filter = BadRequestLogFilter(clock=lambda: now[0])

    def record() -> logging.LogRecord:
        from aiohttp.http_exceptions import LineTooLong

        exc = LineTooLong("header", "8190")
        return logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            "",
            0,
            "Error handling request from %s",
            ("10.0.0.1",),
            (type(exc), exc, None),
        )

    assert log_filter.filter(record())
    assert not log_filter.filter(record())
    assert not log_filter.filter(record())
    now[0] += INTERVAL_S
    third = record()
    assert log_filter.filter(third)
    assert "(2 more since the last such line)" in third.getMessage()
    # The server's own errors are not touched.
    own = logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "boom", (), None)
    assert log_filter.filter(own) and own.levelno == logging.ERROR
