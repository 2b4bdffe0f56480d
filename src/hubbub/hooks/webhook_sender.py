"""One webhook endpoint's sender: a bounded queue, batches, signed requests, retries.

* ``enqueue`` is all the realtime path pays: an append to a deque (and, when the queue is
  over a bound, dropping its oldest event, counted and logged). It never awaits.
* One task per endpoint sends one batch at a time: up to ``batch_max_events`` events, sent
  when that many are queued or the oldest has waited ``batch_max_delay_s``. One batch in flight
  at a time is what keeps events in order (per channel, and overall), retries included.
* A batch that fails (not 2xx, a timeout, no connection) is sent again, the same bytes with the
  same ``X-Hubbub-Webhook-Id``, after an exponential, jittered pause, until it has been retried
  for ``retry_window_s``; then it is dropped and counted. Events queue meanwhile, up to the
  queue's bounds.
* The signature is the hex HMAC-SHA256 of the exact body bytes with the endpoint's secret.

Time is a :class:`Timing`, so tests can run the retry window of minutes in no time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from hubbub.hooks.http import HookFailure, HookHttpClient

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Hubbub-Signature"
WEBHOOK_ID_HEADER: Final = "X-Hubbub-Webhook-Id"
ATTEMPT_HEADER: Final = "X-Hubbub-Attempt"
# Request latency buckets (seconds) of the per-webhook histogram.
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OVERFLOW_WARNING_INTERVAL_S: Final = 10.0
_EVENT_OVERHEAD_BYTES: Final = 64  # what one queued event costs besides its JSON


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Timing(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopTiming:
    def now(self) -> float:
        return time.monotonic()  # what the event loop's clock reads

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    name: str  # labels metrics and log lines (never the URL: it may hold a token)
    url: str
    secret: str
    timeout_s: float = 5.0
    batch_max_events: int = 100
    batch_max_delay_s: float = 0.1
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    retry_window_s: float = 300.0
    queue_max_events: int = 10_000
    queue_max_bytes: int = 16 * 1024 * 1024


@dataclass(slots=True)
class LatencyHistogram:
    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: int = 0
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        index = next((i for i, b in enumerate(self.bounds) if seconds <= b), len(self.bounds))
        self.counts[index] += 1
        self.total += 1
        self.sum_s += seconds


@dataclass(slots=True)
class WebhookStats:
    """What the metrics endpoint reads (no metrics library here)."""

    requests: Counter[str] = field(default_factory=Counter)  # by outcome: ok, status_5xx, ...
    events_delivered: int = 0
    events_dropped: Counter[str] = field(default_factory=Counter)  # overflow, expired
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(frozen=True, slots=True)
class _Queued:
    json: bytes  # one event object, encoded
    size: int


class WebhookSender:
    def __init__(
        self,
        settings: WebhookSettings,
        client: HookHttpClient,
        *,
        timing: Timing | None = None,
        jitter: Callable[[], float] = random.random,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._timing = timing or LoopTiming()
        self._jitter = jitter
        self._clock_ms = clock_ms or _wall_clock_ms
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0
        self._first_queued_at = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._last_overflow_warning = -OVERFLOW_WARNING_INTERVAL_S
        self._overflow_since_warning = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = WebhookStats()

    # --- the realtime side ------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    def queued_events(self) -> list[bytes]:
        """The encoded events waiting, oldest first (for inspection)."""
        return [item.json for item in self._queue]

    @property
    def idle(self) -> bool:
        return not self._queue and not self._in_flight

    def enqueue(self, event_json: bytes) -> None:
        """Queue one encoded event object (never blocks)."""
        item = _Queued(event_json, len(event_json) + _EVENT_OVERHEAD_BYTES)
        if not self._queue:
            self._first_queued_at = self._timing.now()
        self._idle.clear()
        self._queue.append(item)
        self._queued_bytes += item.size
        settings = self.settings
        while len(self._queue) > settings.queue_max_events or (
            self._queued_bytes > settings.queue_max_bytes and len(self._queue) > 1
        ):
            self._drop_oldest()
        if self._wakeup is not None and (
            len(self._queue) >= settings.batch_max_events or len(self._queue) == 1
        ):
            wakeup, self._wakeup = self._wakeup, None
            if not wakeup.done():
                wakeup.set_result(None)

    def _drop_oldest(self) -> None:
        dropped = self._queue.popleft()
        self._queued_bytes -= dropped.size
        self.stats.events_dropped["overflow"] += 1
        self._overflow_since_warning += 1
        now = self._timing.now()
        if now - self._last_overflow_warning >= OVERFLOW_WARNING_INTERVAL_S:
            log.warning(
                "webhook %s: queue full (%d events, %d bytes): dropped the oldest %d event(s)",
                self.settings.name,
                len(self._queue),
                self._queued_bytes,
                self._overflow_since_warning,
            )
            self._last_overflow_warning = now
            self._overflow_since_warning = 0

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_idle(self) -> None:
        """Until nothing is queued or in flight (every event delivered or dropped)."""
        await self._idle.wait()

    async def stop(self, drain_s: float = 1.0) -> None:
        """Give what is queued ``drain_s`` to go out, then stop (the rest is lost)."""
        task, self._task = self._task, None
        if task is None:
            return
        if drain_s > 0 and not self.idle:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._idle.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if (current := asyncio.current_task()) is not None and current.cancelling():
                raise

    # --- the sending side -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._next_batch()
                self._in_flight = len(batch)
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: unexpected error; the batch is lost", self.settings.name)
            finally:
                self._in_flight = 0
                if not self._queue:
                    self._idle.set()

    async def _wait(self, timeout_s: float | None) -> None:
        """Until an event arrives (or the batch fills), or ``timeout_s`` passes."""
        wakeup = self._wakeup = asyncio.get_running_loop().create_future()
        if timeout_s is None:
            await wakeup
            return
        sleeper = asyncio.ensure_future(self._timing.sleep(timeout_s))
        try:
            await asyncio.wait({sleeper, wakeup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            if self._wakeup is wakeup:
                self._wakeup = None

    async def _next_batch(self) -> list[_Queued]:
        settings = self.settings
        while not self._queue:
            await self._wait(None)
        while len(self._queue) < settings.batch_max_events:
            left = self._first_queued_at + settings.batch_max_delay_s - self._timing.now()
            if left <= 0:
                break
            await self._wait(left)
        count = min(len(self._queue), settings.batch_max_events)
        batch = [self._queue.popleft() for _ in range(count)]
        self._queued_bytes -= sum(item.size for item in batch)
        if self._queue:
            # The rest waited as long as the batch did; they go in the next request at once.
            self._first_queued_at = self._timing.now() - settings.batch_max_delay_s
        return batch

    def _body(self, batch: list[_Queued]) -> bytes:
        events = b",".join(item.json for item in batch)
        return b'{"time_ms":%d,"events":[%s]}' % (self._clock_ms(), events)

    def backoff_s(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1, 2, ...): exponential, capped, and
        jittered between half and all of it so that many nodes do not retry in step."""
        settings = self.settings
        ceiling = min(settings.retry_max_s, settings.retry_initial_s * 2.0 ** min(retry - 1, 60))
        return ceiling / 2 + self._jitter() * ceiling / 2

    async def _deliver(self, batch: list[_Queued]) -> None:
        settings = self.settings
        body = self._body(batch)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(settings.secret, body),
            WEBHOOK_ID_HEADER: uuid.uuid4().hex,
        }
        started = self._timing.now()
        attempt = 0
        while True:
            attempt += 1
            headers[ATTEMPT_HEADER] = str(attempt)
            if await self._attempt(body, headers):
                self.stats.events_delivered += len(batch)
                return
            if self._timing.now() - started >= settings.retry_window_s:
                self.stats.events_dropped["expired"] += len(batch)
                log.warning(
                    "webhook %s: gave up on request %s (%d events) after %d attempts in %.0f s",
                    settings.name,
                    headers[WEBHOOK_ID_HEADER],
                    len(batch),
                    attempt,
                    self._timing.now() - started,
                )
                return
            await self._timing.sleep(self.backoff_s(attempt))

    async def _attempt(self, body: bytes, headers: dict[str, str]) -> bool:
        settings = self.settings
        began = asyncio.get_running_loop().time()
        try:
            response = await self._client.post(settings.url, body, headers, settings.timeout_s)
        except HookFailure as failure:
            outcome = failure.outcome
            if headers[ATTEMPT_HEADER] == "1":
                log.info("webhook %s: %s; retrying", settings.name, failure)
        else:
            outcome = "ok" if 200 <= response.status < 300 else f"status_{response.status // 100}xx"
        self.stats.latency.observe(asyncio.get_running_loop().time() - began)
        self.stats.requests[outcome] += 1
        return outcome == "ok"


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)
