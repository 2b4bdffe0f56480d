"""Prometheus exposition at ``GET /metrics`` (prometheus-client is imported only here).

The node's counters live in :class:`~hubbub.core.stats.NodeStats`; a custom collector turns
them into metric families at scrape time, so nothing on the hot path touches this library.
Conversation turn timings (spec conversation section 10) arrive through
:class:`TurnMetricsRecorder`, which the conversation service is given as a plain callable.
Webhook senders and backend proxies keep their own plain counters and latency buckets
(:mod:`hubbub.hooks`), read the same way at scrape time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hubbub.core.history import HistoryStats
from hubbub.core.node import Node
from hubbub.hooks.proxies import BackendProxies
from hubbub.hooks.webhook_sender import LatencyHistogram, WebhookSender

# Milliseconds are the protocol's unit; Prometheus convention is seconds.
_TURN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TURN_TIMINGS_MS = {
    "timeToFirstTokenMs": ("hubbub_conversation_time_to_first_token_seconds", "LLM/responder"),
    "timeToFirstAudioMs": ("hubbub_conversation_time_to_first_audio_seconds", "speech"),
    "llmDurationMs": ("hubbub_conversation_llm_duration_seconds", "answer generation"),
    "ttsDurationMs": ("hubbub_conversation_tts_duration_seconds", "speech synthesis"),
    "totalTurnDurationMs": ("hubbub_conversation_turn_duration_seconds", "whole turn"),
    "asrDurationMs": ("hubbub_conversation_asr_duration_seconds", "speech recognition"),
    "processingDurationMs": ("hubbub_conversation_processing_duration_seconds", "input handling"),
}


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped with no running loop (a collector used from a thread)
        return 0


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node, stats = self._node, self._node.stats
        yield GaugeMetricFamily(
            "hubbub_connections", "Open realtime WebSocket connections", node.connection_count
        )
        # A soak's leak detector: tasks that outlive their connections show up here.
        yield GaugeMetricFamily(
            "hubbub_asyncio_tasks", "Live asyncio tasks in the node's event loop", _task_count()
        )
        simple = (
            ("hubbub_connections_opened", "Connections admitted", stats.connections_opened),
            (
                "hubbub_connections_refused",
                "Connections refused at the quota gate (4010)",
                stats.connections_refused,
            ),
            ("hubbub_frames_received", "Client frames received", stats.frames_received),
            ("hubbub_publications", "Client publishes accepted", stats.publications),
            ("hubbub_deliveries", "Message frames queued to local connections", stats.deliveries),
            ("hubbub_directs", "Direct sends that reached a local connection", stats.directs),
        )
        for name, help_text, value in simple:
            yield CounterMetricFamily(name, help_text, value=value)
        errors = CounterMetricFamily("hubbub_error_frames", "Error frames sent", labels=["code"])
        for code, count in sorted(stats.errors.items()):
            errors.add_metric([code], count)
        yield errors
        history = node.history_stats
        if history is not None:
            yield from _history_metrics(history)
        closes = CounterMetricFamily(
            "hubbub_server_closes", "Connections the server closed", labels=["code"]
        )
        for close_code, count in sorted(stats.closes.items()):
            closes.add_metric([str(int(close_code))], count)
        yield closes


def _histogram_buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        running += count
        buckets.append((repr(bound), running))
    buckets.append(("+Inf", histogram.total))
    return buckets


class _HooksCollector(Collector):
    def __init__(self, senders: Sequence[WebhookSender], proxies: BackendProxies | None) -> None:
        self._senders = senders
        self._proxies = proxies

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "hubbub_webhook_requests",
            "Webhook requests by outcome (ok, status_4xx, status_5xx, timeout, unreachable)",
            labels=["webhook", "outcome"],
        )
        delivered = CounterMetricFamily(
            "hubbub_webhook_events_delivered",
            "Events a webhook endpoint accepted",
            labels=["webhook"],
        )
        dropped = CounterMetricFamily(
            "hubbub_webhook_events_dropped",
            "Events dropped: overflow (queue full, oldest first) or expired (retry window over)",
            labels=["webhook", "reason"],
        )
        queued = GaugeMetricFamily(
            "hubbub_webhook_queue_events", "Events waiting to be sent", labels=["webhook"]
        )
        latency = HistogramMetricFamily(
            "hubbub_webhook_request_seconds", "Webhook request latency", labels=["webhook"]
        )
        for sender in self._senders:
            name, stats = sender.settings.name, sender.stats
            for outcome, count in sorted(stats.requests.items()):
                requests.add_metric([name, outcome], count)
            delivered.add_metric([name], stats.events_delivered)
            for reason in ("overflow", "expired"):
                dropped.add_metric([name, reason], stats.events_dropped[reason])
            queued.add_metric([name], sender.queued)
            latency.add_metric(
                [name], _histogram_buckets(stats.latency), sum_value=stats.latency.sum_s
            )
        yield from (requests, delivered, dropped, queued, latency)
        if self._proxies is None:
            return
        proxy_requests = CounterMetricFamily(
            "hubbub_proxy_requests",
            "Backend proxy requests by proxy and outcome (status_<code>, timeout, ...)",
            labels=["proxy", "outcome"],
        )
        for (proxy, outcome), count in sorted(self._proxies.stats.requests.items()):
            proxy_requests.add_metric([proxy, outcome], count)
        proxy_latency = HistogramMetricFamily(
            "hubbub_proxy_request_seconds", "Backend proxy request latency", labels=["proxy"]
        )
        for proxy, histogram in sorted(self._proxies.stats.latency.items()):
            proxy_latency.add_metric(
                [proxy], _histogram_buckets(histogram), sum_value=histogram.sum_s
            )
        yield from (proxy_requests, proxy_latency)


def _history_metrics(stats: HistoryStats) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "hubbub_history_appended", "Publications recorded in channel history", value=stats.appended
    )
    yield CounterMetricFamily(
        "hubbub_publish_duplicates",
        "Publishes not delivered again: their messageId was seen within dedup_window_s",
        value=stats.duplicates,
    )
    evicted = CounterMetricFamily(
        "hubbub_history_evicted",
        "Publications dropped from history, by reason (size: history_size, ttl: history_ttl_s, "
        "cap: the memory broker's history_memory_bytes)",
        labels=["reason"],
    )
    evicted.add_metric(["size"], stats.evicted_by_size)
    evicted.add_metric(["ttl"], stats.evicted_by_ttl)
    evicted.add_metric(["cap"], stats.evicted_by_cap)
    yield evicted
    yield CounterMetricFamily(
        "hubbub_history_channels_evicted",
        "Channels whose whole history (and epoch) the memory cap dropped",
        value=stats.channels_evicted,
    )
    yield CounterMetricFamily(
        "hubbub_dedup_ids_evicted",
        "Message ids forgotten before their window ended (the memory broker's dedup_memory_ids)",
        value=stats.dedup_ids_evicted,
    )
    yield GaugeMetricFamily(
        "hubbub_history_retained_bytes",
        "History held in memory (estimated; memory broker only)",
        stats.retained_bytes,
    )


class TurnMetricsRecorder:
    """Histograms of the timing figures carried by conversation ``message`` events."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._histograms = {
            key: Histogram(
                name, f"Conversation {what} time", registry=registry, buckets=_TURN_BUCKETS_S
            )
            for key, (name, what) in TURN_TIMINGS_MS.items()
        }

    def __call__(self, timings_ms: Mapping[str, object]) -> None:
        for key, histogram in self._histograms.items():
            value = timings_ms.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                histogram.observe(value / 1000)


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


def build_metrics(
    node: Node,
    webhook_senders: Sequence[WebhookSender] = (),
    proxies: BackendProxies | None = None,
) -> tuple[CollectorRegistry, TurnMetricsRecorder]:
    registry = CollectorRegistry()
    registry.register(_NodeCollector(node))
    registry.register(_HooksCollector(webhook_senders, proxies))
    return registry, TurnMetricsRecorder(registry)
