"""Helpers for the hooks tests: virtual time for retry windows of minutes, a sender factory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hubbub.hooks.http import HookHttpClient
from hubbub.hooks.webhook_sender import WebhookSender, WebhookSettings
from tests.support.backend import Backend, Received, running_backend

SECRET = "whsec_test"


class VirtualTiming:
    """Every sleep returns at once and moves the clock: minutes of backoff in milliseconds.
    HTTP requests still go to a real backend, in real time. ``hold_at(n)`` makes the n-th
    sleep wait until ``release()``, so a test can change the world at a known point."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.sleeps: list[float] = []
        self.holding = asyncio.Event()
        self._hold_at: int | None = None
        self._released = asyncio.Event()

    def now(self) -> float:
        return self.now_s

    def hold_at(self, sleep_number: int) -> None:
        self._hold_at = sleep_number

    def release(self) -> None:
        self._released.set()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        if self._hold_at is not None and len(self.sleeps) >= self._hold_at:
            self.holding.set()
            await self._released.wait()
        await asyncio.sleep(0)


def settings_for(backend: Backend, **overrides: Any) -> WebhookSettings:
    fields: dict[str, Any] = {
        "name": "test",
        "url": backend.url("/hooks"),
        "secret": SECRET,
        "timeout_s": 2.0,
    }
    fields.update(overrides)
    return WebhookSettings(**fields)


def event(channel: str, n: int) -> bytes:
    return json.dumps({"name": "client_event", "channel": channel, "data": n}).encode()


def delivered_events(accepted: list[Received]) -> list[dict[str, Any]]:
    """The events of requests a backend accepted, each request once, in order."""
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    for request in accepted:
        webhook_id = request.headers["X-Hubbub-Webhook-Id"]
        if webhook_id not in seen:
            seen.add(webhook_id)
            events.extend(request.json["events"])
    return events


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as running:
        yield running


@pytest.fixture
async def make_sender() -> AsyncIterator[Callable[..., WebhookSender]]:
    client = HookHttpClient()
    senders: list[WebhookSender] = []

    def make(settings: WebhookSettings, timing: Any = None, jitter: Any = None) -> WebhookSender:
        sender = WebhookSender(
            settings, client, timing=timing, **({"jitter": jitter} if jitter else {})
        )
        sender.start()
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.stop(drain_s=0)
    await client.close()
