"""A client that vanishes (no SCTP shutdown, no DTLS close: its ICE transport just stops
answering) is noticed by ICE consent checks and released quietly: one close line, nothing
unhandled from aiortc's background tasks. (What Chromium does when a tab closes is checked
against the real browser in test_voice_page.py.)"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import aioice.ice
import pytest

from hubbub.transports.webrtc import WebRtcPeer

from .conftest import TIMEOUT_S, Client, WebRtcServer

pytestmark = pytest.mark.integration


async def test_a_vanished_client_is_closed_without_a_traceback(
    server: WebRtcServer,
    clients: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ICE consent freshness (RFC 7675) is what notices a vanished browser: every 5 s, given
    # up after 6 misses. Faster here, so the test takes a fraction of a second, not 30 s.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.05)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 2)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        client = clients()
        await client.connect(server.offer_url)
        handler = await server.sessions.first()
        peer = handler.channel
        assert isinstance(peer, WebRtcPeer)
        recorded_close = handler.closed

        async def closing_takes_a_while() -> None:  # a real session writes to its store
            await asyncio.sleep(0.3)
            await recorded_close()

        monkeypatch.setattr(handler, "closed", closing_takes_a_while)
        caplog.set_level(logging.INFO, logger="hubbub.transports.webrtc")
        # The client goes away without a word (no SCTP shutdown, no DTLS close_notify): its
        # ICE transport simply stops answering, as when a tab is closed or a laptop sleeps.
        sctp = client.pc.sctp
        assert sctp is not None
        await sctp.transport.transport.stop()
        await asyncio.wait_for(peer.until_closed(), TIMEOUT_S)
        await asyncio.wait_for(handler.closed_event.wait(), TIMEOUT_S)
        for _ in range(3):  # let aiortc's tasks finish, then collect what nobody awaited
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)

    assert unhandled == []
    closed = [r for r in caplog.records if getattr(r, "event", None) == "conversation_closed"]
    assert len(closed) == 1
    assert not [r for r in caplog.records if r.exc_info]
