"""Webhooks from a real server to a real backend, with the official Python SDK as the client."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from metered_realtime import Message, Presence

from tests.cluster.conftest import demo_token, sdk_client
from tests.support.backend import HANG, Backend, Received, running_backend
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server

pytestmark = pytest.mark.integration

SECRET = "whsec_integration"


def webhook_toml(backend: Backend, extra: str = "") -> str:
    return (
        DEMO_APP_TOML
        + f"""
[[apps.webhooks]]
name = "backend"
url = "{backend.url("/hooks")}"
secret = "{SECRET}"
retry_initial_ms = 50
retry_max_ms = 200
{extra}
"""
    )


def events_of(requests: list[Received]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    for request in requests:
        webhook_id = request.headers["X-Hubbub-Webhook-Id"]
        if webhook_id not in seen:
            seen.add(webhook_id)
            events.extend(request.json["events"])
    return events


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


async def metric(server: ServerProcess, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{server.http_url}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None or found.group("name") != name:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', found.group("labels") or ""))
        if pairs == labels:
            return float(found.group("value"))
    return 0.0


async def metric_reaches(
    server: ServerProcess, value: float, name: str, at_least: bool = False, **labels: str
) -> None:
    """The sender counts an answer just after the backend sent it: read until it shows."""
    async with asyncio.timeout(10):
        while (found := await metric(server, name, **labels)) != value and not (
            at_least and found >= value
        ):
            await asyncio.sleep(0.05)  # polling another process's counters, bounded above


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as running:
        yield running


async def test_a_rooms_life_reaches_the_backend_signed_and_in_order(backend: Backend) -> None:
    async with running_server(webhook_toml(backend, 'channel_patterns = ["room*"]')) as server:
        async with sdk_client(server, token=demo_token("alice")) as alice:
            await alice.client.subscribe("room")
            await alice.next(Presence)
            await alice.client.subscribe("elsewhere")  # outside the webhook's patterns
            async with sdk_client(server, token=demo_token("bob")) as bob:
                await bob.client.subscribe("room")
                await bob.next(Presence)
                await bob.client.publish("room", {"text": "hi"})
                await alice.next(Message)
            await alice.next(Presence, lambda p: bool(p.left))
        expected = [
            {"name": "channel_occupied", "channel": "room"},
            {"name": "member_added", "channel": "room", "user_id": "alice"},
            {"name": "member_added", "channel": "room", "user_id": "bob"},
            {"name": "client_event", "channel": "room", "user_id": "bob", "data": {"text": "hi"}},
            {"name": "member_removed", "channel": "room", "user_id": "bob"},
            {"name": "member_removed", "channel": "room", "user_id": "alice"},
            {"name": "channel_vacated", "channel": "room"},
        ]
        await backend.wait_for(lambda rs: len(events_of(rs)) >= len(expected))
        assert events_of(backend.requests) == expected
        for request in backend.requests:
            assert request.signed_with(SECRET)
            assert isinstance(request.json["time_ms"], int)
        await metric_reaches(server, 7, "hubbub_webhook_events_delivered_total", webhook="backend")
        assert await metric(
            server, "hubbub_webhook_requests_total", webhook="backend", outcome="ok"
        )
        assert await metric(server, "hubbub_webhook_request_seconds_count", webhook="backend")


async def test_failures_are_retried_with_the_same_id_and_nothing_is_lost(backend: Backend) -> None:
    statuses = iter([500, 502, 503])
    backend.answer("/hooks", lambda _: (next(statuses, 200), {}))
    async with running_server(webhook_toml(backend)) as server:
        async with sdk_client(server, token=demo_token("alice")) as alice:
            for n in range(5):
                await alice.client.publish(f"chan-{n % 2}", n)
        await backend.wait_for(lambda _: len(events_of(backend.accepted("/hooks"))) == 5)
        ids = [r.headers["X-Hubbub-Webhook-Id"] for r in backend.requests]
        assert len(ids) >= 4 and len(set(ids[:4])) == 1  # the first batch, four times
        assert [e["data"] for e in events_of(backend.accepted("/hooks"))] == [0, 1, 2, 3, 4]
        assert (
            await metric(
                server, "hubbub_webhook_requests_total", webhook="backend", outcome="status_5xx"
            )
            == 3
        )


async def test_a_dead_backend_does_not_stop_the_realtime_path(backend: Backend) -> None:
    await backend.stop()
    async with running_server(webhook_toml(backend, "retry_window_s = 60")) as server:
        async with (
            sdk_client(server, token=demo_token("alice")) as alice,
            sdk_client(server, token=demo_token("bob")) as bob,
        ):
            await alice.client.subscribe("room")
            await bob.client.subscribe("room")
            for n in range(50):
                await bob.client.publish("room", n)
            await alice.next(Message, lambda m: m.data == 49)
            assert [m.data for m in alice.of(Message)] == list(range(50))
            await metric_reaches(
                server,
                1,
                "hubbub_webhook_requests_total",
                at_least=True,
                webhook="backend",
                outcome="unreachable",
            )
            await backend.start()  # back: everything queued meanwhile arrives, in order
            await backend.wait_for(
                lambda _: sum(1 for e in events_of(backend.accepted("/hooks"))) >= 53, 20
            )
        delivered = events_of(backend.accepted("/hooks"))
        published = [e["data"] for e in delivered if e["name"] == "client_event"]
        assert published == list(range(50))


async def test_a_full_queue_drops_the_oldest_and_says_so(backend: Backend) -> None:
    backend.answer("/hooks", HANG)
    extra = "batch_max_events = 10\nqueue_max_events = 20\ntimeout_ms = 20000"
    async with running_server(webhook_toml(backend, extra)) as server:
        async with sdk_client(server, token=demo_token("alice")) as alice:
            await alice.client.publish("room", 0)
            await backend.wait_for(lambda rs: len(rs) == 1)  # in flight, and it hangs
            for n in range(1, 101):
                await alice.client.publish("room", n)
            assert await metric(server, "hubbub_webhook_queue_events", webhook="backend") == 20
            dropped = await metric(
                server, "hubbub_webhook_events_dropped_total", webhook="backend", reason="overflow"
            )
            assert dropped == 80
        log = server.log_text()
        assert log.count("queue full") == 1, log
        assert "Traceback" not in log
        assert json.loads(backend.requests[0].body)["events"][0]["data"] == 0
