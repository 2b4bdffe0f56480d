"""One webhook endpoint's sender against a real backend on loopback.

Retry windows of minutes run on virtual time (:class:`VirtualTiming`): the sender's pauses
return at once, the requests are real.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from hubbub.hooks.http import HookHttpClient
from hubbub.hooks.webhook_sender import WebhookSender, WebhookSettings, sign
from tests.hooks.conftest import (
    SECRET,
    VirtualTiming,
    delivered_events,
    event,
    settings_for,
)
from tests.support.backend import HANG, Backend, Received

pytestmark = pytest.mark.integration

MakeSender = Callable[..., WebhookSender]


async def wait_idle(sender: WebhookSender, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        await sender.wait_idle()


async def test_a_signed_pusher_shaped_request(backend: Backend, make_sender: MakeSender) -> None:
    sender = make_sender(settings_for(backend))
    sender.enqueue(b'{"name":"channel_occupied","channel":"room"}')
    sender.enqueue(b'{"name":"member_added","channel":"room","user_id":"alice"}')
    (request,) = await backend.wait_for(lambda rs: len(rs) >= 1)
    assert request.path == "/hooks"
    assert request.headers["Content-Type"] == "application/json"
    assert request.signed_with(SECRET)
    assert request.headers["X-Hubbub-Signature"] == sign(SECRET, request.body)
    assert not request.signed_with("another secret")
    body = request.json
    assert isinstance(body["time_ms"], int)
    assert body["events"] == [
        {"name": "channel_occupied", "channel": "room"},
        {"name": "member_added", "channel": "room", "user_id": "alice"},
    ]
    assert len(request.headers["X-Hubbub-Webhook-Id"]) == 32
    await wait_idle(sender)
    assert sender.stats.events_delivered == 2
    assert sender.stats.requests["ok"] == 1


async def test_a_failed_request_is_retried_with_the_same_id_and_bytes(
    backend: Backend, make_sender: MakeSender
) -> None:
    statuses = iter([500, 503, 404])
    backend.answer("/hooks", lambda _: (next(statuses, 200), {}))
    timing = VirtualTiming()
    sender = make_sender(
        settings_for(backend, retry_initial_s=1.0, retry_max_s=4.0), timing, jitter=lambda: 0.5
    )
    sender.enqueue(event("room", 1))
    await wait_idle(sender)
    attempts = backend.received("/hooks")
    assert len(attempts) == 4
    assert len({r.headers["X-Hubbub-Webhook-Id"] for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1
    assert [r.headers["X-Hubbub-Attempt"] for r in attempts] == ["1", "2", "3", "4"]
    assert all(r.signed_with(SECRET) for r in attempts)
    # Exponential (1, 2, 4 s ceilings), capped at 4, jittered to 3/4 of each here; the first
    # sleep is the batch window.
    assert timing.sleeps[-3:] == [0.75, 1.5, 3.0]
    assert dict(sender.stats.requests) == {"status_5xx": 2, "status_4xx": 1, "ok": 1}
    assert sender.stats.events_delivered == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    settings = WebhookSettings("x", "http://127.0.0.1:1/", "s", retry_initial_s=0.5, retry_max_s=30)
    low = WebhookSender(settings, HookHttpClient(), jitter=lambda: 0.0)
    high = WebhookSender(settings, HookHttpClient(), jitter=lambda: 0.999999)
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    for retry, ceiling in enumerate(ceilings, start=1):
        assert low.backoff_s(retry) == pytest.approx(ceiling / 2)
        assert high.backoff_s(retry) == pytest.approx(ceiling, rel=1e-5)
    assert high.backoff_s(10_000) == pytest.approx(30, rel=1e-5)  # no overflow


async def test_a_timeout_is_retried(backend: Backend, make_sender: MakeSender) -> None:
    calls: list[Received] = []

    def first_hangs(request: Received) -> Any:
        calls.append(request)
        return HANG if len(calls) == 1 else (200, {})

    backend.answer("/hooks", first_hangs)
    sender = make_sender(settings_for(backend, timeout_s=0.3), VirtualTiming())
    sender.enqueue(event("room", 1))
    await wait_idle(sender)
    assert sender.stats.requests["timeout"] == 1
    assert sender.stats.requests["ok"] == 1
    assert calls[0].headers["X-Hubbub-Webhook-Id"] == calls[1].headers["X-Hubbub-Webhook-Id"]


async def test_the_default_schedule_retries_for_five_minutes_then_drops_the_batch(
    backend: Backend, make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    backend.answer("/hooks", 500)
    timing = VirtualTiming()
    sender = make_sender(settings_for(backend), timing)  # the defaults: 0.5 s .. 30 s, 300 s
    sender.enqueue(event("room", 1))
    with caplog.at_level(logging.WARNING):
        await wait_idle(sender)
    assert sender.stats.events_dropped["expired"] == 1
    attempts = backend.received("/hooks")
    retried_for_s = sum(timing.sleeps[1:])  # the first sleep is the batch window
    assert retried_for_s >= 300
    assert len(attempts) >= 10
    assert len({r.headers["X-Hubbub-Webhook-Id"] for r in attempts}) == 1
    assert "gave up on request" in caplog.text
    # The sender goes on with what comes next.
    backend.answer("/hooks", 200)
    sender.enqueue(event("room", 2))
    await wait_idle(sender)
    assert sender.stats.events_delivered == 1
    assert delivered_events(backend.accepted("/hooks")) == [json.loads(event("room", 2))]


async def test_nothing_is_lost_or_reordered_within_the_retry_window(
    backend: Backend, make_sender: MakeSender
) -> None:
    timing = VirtualTiming()
    # Down (500) for four virtual minutes, then up.
    backend.answer("/hooks", lambda _: (500, {}) if timing.now_s < 240 else (200, {}))
    sender = make_sender(settings_for(backend, batch_max_events=10), timing)
    sent = [event(f"room-{n % 3}", n) for n in range(250)]
    for item in sent:
        sender.enqueue(item)
    await wait_idle(sender)
    assert sender.stats.events_delivered == 250
    assert delivered_events(backend.accepted("/hooks")) == [json.loads(e) for e in sent]
    assert sender.stats.events_dropped["expired"] == 0
    assert sender.stats.requests["status_5xx"] >= 5


async def test_a_backend_that_is_down_then_back(backend: Backend, make_sender: MakeSender) -> None:
    await backend.stop()
    timing = VirtualTiming()
    timing.hold_at(4)  # the batch window, then three refused attempts
    sender = make_sender(settings_for(backend, timeout_s=1.0), timing)
    sent = [event("a", n) for n in range(5)] + [event("b", n) for n in range(5)]
    for item in sent:
        sender.enqueue(item)
    async with asyncio.timeout(10):
        await timing.holding.wait()
    assert sender.stats.requests["unreachable"] == 3
    await backend.start()
    timing.release()
    await wait_idle(sender)
    assert sender.stats.events_delivered == 10
    assert delivered_events(backend.accepted("/hooks")) == [json.loads(e) for e in sent]


async def test_batches_hold_at_most_the_configured_events(
    backend: Backend, make_sender: MakeSender
) -> None:
    sender = make_sender(settings_for(backend), VirtualTiming())
    for n in range(250):
        sender.enqueue(event("room", n))
    await wait_idle(sender)
    assert sender.stats.events_delivered == 250
    sizes = [len(r.json["events"]) for r in backend.received("/hooks")]
    assert sizes == [100, 100, 50]


async def test_a_lone_event_waits_the_batch_window_and_no_longer(
    backend: Backend, make_sender: MakeSender
) -> None:
    timing = VirtualTiming()
    sender = make_sender(settings_for(backend, batch_max_delay_s=0.1), timing)
    sender.enqueue(event("room", 1))
    await backend.wait_for(lambda rs: len(rs) == 1)
    assert timing.sleeps == [pytest.approx(0.1)]


async def test_overflow_drops_the_oldest_counts_and_warns(
    backend: Backend, make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()

    async def held_until_the_gate_opens(_: Received) -> Any:
        await gate.wait()
        return (200, {})

    backend.answer("/hooks", held_until_the_gate_opens)  # the first batch is in flight meanwhile
    sender = make_sender(
        settings_for(backend, batch_max_events=10, queue_max_events=20, timeout_s=5.0),
        VirtualTiming(),
    )
    for n in range(10):
        sender.enqueue(event("room", n))
    await backend.wait_for(lambda rs: len(rs) == 1)  # events 0-9 in flight
    with caplog.at_level(logging.WARNING):
        for n in range(10, 60):
            sender.enqueue(event("room", n))
    assert sender.queued == 20  # bounded: never more
    assert sender.stats.events_dropped["overflow"] == 30
    assert [json.loads(e)["data"] for e in sender.queued_events()] == list(range(40, 60))
    warnings = [r for r in caplog.records if "queue full" in r.message]
    assert len(warnings) == 1  # one warning, not one per dropped event
    gate.set()
    await wait_idle(sender)
    assert sender.stats.events_delivered == 30
    delivered = [e["data"] for e in delivered_events(backend.accepted("/hooks"))]
    assert delivered == list(range(10)) + list(range(40, 60))


async def test_overflow_by_bytes(backend: Backend, make_sender: MakeSender) -> None:
    gate = asyncio.Event()

    async def held(_: Received) -> Any:
        await gate.wait()
        return (200, {})

    backend.answer("/hooks", held)
    sender = make_sender(
        settings_for(backend, batch_max_events=1, queue_max_bytes=65536), VirtualTiming()
    )
    big = json.dumps({"name": "client_event", "channel": "c", "data": "x" * 20_000}).encode()
    sender.enqueue(big)
    await backend.wait_for(lambda rs: len(rs) == 1)
    for _ in range(10):
        sender.enqueue(big)
    assert sender.queued == 3  # 3 x ~20 KB fit in 64 KiB
    assert sender.stats.events_dropped["overflow"] == 7
    gate.set()
    await wait_idle(sender)
    assert sender.stats.events_delivered == 4
