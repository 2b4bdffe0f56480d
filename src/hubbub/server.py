"""Wiring: the only place that picks concrete implementations and puts the parts together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from hubbub import version
from hubbub.api.errors import api_errors
from hubbub.api.health import HealthApi
from hubbub.api.listing import ListingApi
from hubbub.api.metrics import build_metrics, metrics_handler
from hubbub.api.pages import Pages, SiteInfo
from hubbub.api.rest import RestApi, RestSettings
from hubbub.auth.client_ip import TrustedProxies
from hubbub.auth.keys import KeyRing
from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.brokers.memory_history import MemoryHistoryStore
from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_events import RedisEventRouter
from hubbub.brokers.redis_history import RedisHistoryStore
from hubbub.brokers.redis_link import RedisLink, RedisShards
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore
from hubbub.config import PUBLIC_DEMO_SECRET_KEY, Config, key_ring_of
from hubbub.config_hooks import ConversationWebhookConfig, WebhookConfig
from hubbub.console import docs_dir, static_dir
from hubbub.console.demo import add_demo_api
from hubbub.conversation.session.service import ConversationService
from hubbub.core.authorizer import NO_AUTHORIZER, Authorizer
from hubbub.core.broker import AppQuota, Broker, PresenceStore, UsageStore
from hubbub.core.events import NO_EVENTS, EventSink
from hubbub.core.history import HistoryStore, Retention, RetentionRule, RetentionRules
from hubbub.core.node import Node, NodeLimits
from hubbub.core.timers import LoopScheduler
from hubbub.hooks.proxies import BackendProxies, KeyProxies
from hubbub.hooks.webhook_sender import WebhookSettings
from hubbub.hooks.webhooks import ChannelRoute, ConversationRoute, WebhookDispatcher
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.patterns import compile_pattern
from hubbub.server_conversations import (
    CONVERSATIONS_KEY,
    add_conversation_commands,
    add_conversation_reads,
    add_conversations,
)
from hubbub.transports.http_log import install_bad_request_log_filter
from hubbub.transports.listener import Listener
from hubbub.transports.realtime_shared import RealtimeSettings, RealtimeShared
from hubbub.transports.websocket import (
    ENVELOPE_SLACK_BYTES,
    RealtimeEndpoint,
    WebSocketSettings,
    connect_limiter,
)

log = logging.getLogger(__name__)

NODE_KEY = web.AppKey("node", Node)
KEYS_KEY = web.AppKey("keys", KeyRing)
CONFIG_KEY = web.AppKey("config", Config)


@dataclass(frozen=True, slots=True)
class LeanRealtime:
    """What the lean /v1 transport (``transports.listener``) is built from at serve time."""

    build: Callable[[asyncio.AbstractEventLoop], RealtimeShared]


LEAN_KEY = web.AppKey("lean_realtime", LeanRealtime)


def _backends(
    config: Config, node_id: str, events: EventSink
) -> tuple[Broker, PresenceStore, UsageStore, HistoryStore]:
    settings = config.broker
    if settings.kind == "memory":
        history = MemoryHistoryStore(
            max_bytes=config.server.history_memory_bytes,
            max_message_ids=config.server.dedup_memory_ids,
        )
        return MemoryBroker(history), MemoryPresenceStore(events), MemoryUsageStore(), history
    urls = [settings.url] if isinstance(settings.url, str) else settings.url
    shards = RedisShards(
        [
            RedisLink(url, cluster=settings.cluster, max_connections=settings.max_connections)
            for url in urls
        ]
    )
    prefix = settings.key_prefix
    # Lifecycle events are decided in Redis and sent by one node per channel.
    router = RedisEventRouter(node_id, events) if events is not NO_EVENTS else None
    presence = RedisPresenceStore(shards, prefix, node_id, router)
    usage = RedisUsageStore(shards, prefix, node_id)
    redis_history = RedisHistoryStore(shards, prefix)
    broker = RedisBroker(
        shards,
        presence,
        usage,
        node_id=node_id,
        prefix=prefix,
        presence_ttl_s=settings.presence_ttl_s,
        events=router,
        history=redis_history,
    )
    return broker, presence, usage, redis_history


def retention_rules(config: Config) -> RetentionRules:
    """``[[apps.channels]]`` in file order (the first match wins)."""
    return RetentionRules(
        {
            app.id: [
                RetentionRule(
                    compile_pattern(entry.pattern),
                    Retention(entry.history_size, entry.history_ttl_s),
                )
                for entry in app.channels
            ]
            for app in config.apps
            if app.channels
        }
    )


def _webhook_settings(
    hook: WebhookConfig | ConversationWebhookConfig, name: str
) -> WebhookSettings:
    # Loading the configuration filled the secret from secret_env / secret_file, or refused it.
    assert hook.secret is not None
    return WebhookSettings(
        name=hook.name or name,
        url=hook.url,
        secret=hook.secret,
        timeout_s=hook.timeout_ms / 1000,
        batch_max_events=hook.batch_max_events,
        batch_max_delay_s=hook.batch_max_delay_ms / 1000,
        retry_initial_s=hook.retry_initial_ms / 1000,
        retry_max_s=hook.retry_max_ms / 1000,
        retry_window_s=hook.retry_window_s,
        queue_max_events=hook.queue_max_events,
        queue_max_bytes=hook.queue_max_bytes,
    )


def build_webhooks(config: Config) -> WebhookDispatcher:
    channel_routes = [
        ChannelRoute(
            app.id,
            _webhook_settings(hook, f"{app.id}#{i}"),
            frozenset(hook.events),
            tuple(hook.channel_patterns),
        )
        for app in config.apps
        for i, hook in enumerate(app.webhooks)
    ]
    conversation_routes = [
        ConversationRoute(
            _webhook_settings(hook, f"conversations#{i}"),
            frozenset(hook.events),
            frozenset(hook.project_ids),
        )
        for i, hook in enumerate(config.conversations.webhooks)
    ]
    return WebhookDispatcher(channel_routes, conversation_routes)


def build_proxies(config: Config) -> BackendProxies | None:
    by_key = {
        key.id: KeyProxies(
            app_id=app.id,
            connect_url=key.connect_proxy,
            subscribe_url=key.subscribe_proxy,
            publish_url=key.publish_proxy,
            timeout_s=key.proxy_timeout_ms / 1000,
            forwarded_headers=frozenset(key.connect_proxy_headers),
        )
        for app in config.apps
        for key in app.keys
        if key.connect_proxy or key.subscribe_proxy or key.publish_proxy
    }
    if not by_key:
        return None
    return BackendProxies(by_key, max_data_bytes=config.limits.max_message_bytes)


def build_node(
    config: Config, events: EventSink = NO_EVENTS, authorizer: Authorizer = NO_AUTHORIZER
) -> Node:
    limits = config.limits
    node_id = config.broker.node_id or uuid.uuid4().hex[:12]
    broker, presence, usage, history = _backends(config, node_id, events)
    return Node(
        node_id=node_id,
        broker=broker,
        presence=presence,
        usage=usage,
        limits=NodeLimits(
            rate_per_second=limits.rate_per_second,
            rate_burst=limits.rate_burst,
            ping_rate_per_second=limits.ping_rate_per_second,
            ping_burst=limits.ping_burst,
            max_message_bytes=limits.max_message_bytes,
            max_channels=limits.max_channels,
        ),
        quotas={
            app.id: AppQuota(
                max_concurrent_connections=app.max_concurrent_connections,
                max_messages_per_period=app.max_messages_per_period,
                period_s=app.message_period_s,
            )
            for app in config.apps
        },
        clock=time.time,
        scheduler=LoopScheduler(),
        events=events,
        authorizer=authorizer,
        history=history,
        retention=retention_rules(config),
        dedup_window_s=config.server.dedup_window_s,
    )


def build_app(config: Config) -> web.Application:
    install_bad_request_log_filter()
    keys = key_ring_of(config)
    webhooks = build_webhooks(config)
    proxies = build_proxies(config)
    node = build_node(
        config,
        webhooks if webhooks.active else NO_EVENTS,
        proxies if proxies is not None else NO_AUTHORIZER,
    )
    server = config.server
    ws_settings = WebSocketSettings(
        max_message_bytes=config.limits.max_message_bytes,
        slow_consumer_bytes=server.slow_consumer_bytes,
        snapshot_delay_s=server.snapshot_delay_ms / 1000,
        keepalive_interval_s=server.keepalive_interval_s,
        keepalive_timeout_s=server.keepalive_timeout_s,
        connect_attempts_per_ip=server.connect_attempts_per_ip,
        connect_window_s=server.connect_window_s,
    )
    ip_limiter = connect_limiter(ws_settings)
    trusted = TrustedProxies(server.trusted_proxies)
    endpoint = RealtimeEndpoint(
        node, keys, ws_settings, trusted, connect_proxy=proxies, ip_limiter=ip_limiter
    )
    max_frame = config.limits.max_message_bytes
    lean_settings = RealtimeSettings(
        max_message_bytes=max_frame + ENVELOPE_SLACK_BYTES if max_frame else 0,
        slow_consumer_bytes=server.slow_consumer_bytes,
        snapshot_delay_s=server.snapshot_delay_ms / 1000,
        keepalive_interval_s=server.keepalive_interval_s,
        keepalive_timeout_s=server.keepalive_timeout_s,
        inline=config.broker.kind == "memory",
    )
    app = web.Application()
    app[LEAN_KEY] = LeanRealtime(
        lambda loop: RealtimeShared(node, keys, lean_settings, trusted, ip_limiter, proxies, loop)
    )
    app[NODE_KEY] = node
    app[KEYS_KEY] = keys
    app[CONFIG_KEY] = config
    app.router.add_get("/v1", endpoint.handle)
    HealthApi(node).add_routes(app)
    metrics_registry, turn_metrics = build_metrics(node, webhooks.senders, proxies)
    app.router.add_get("/metrics", metrics_handler(metrics_registry))
    app.middlewares.append(api_errors)
    api = config.api
    rest = RestApi(
        node,
        keys,
        RestSettings(
            requests_per_second_per_key=api.requests_per_second_per_key,
            request_burst_per_key=api.request_burst_per_key,
            requests_per_second_per_ip=api.requests_per_second_per_ip,
            request_burst_per_ip=api.request_burst_per_ip,
            plan_names={entry.id: entry.plan_name for entry in config.apps},
        ),
        TrustedProxies(server.trusted_proxies),
    )
    rest.add_routes(app)
    ListingApi(node, rest.authorize).add_routes(app)

    async def start_node(app: web.Application) -> None:
        webhooks.start()
        await node.start()

    async def stop_node(app: web.Application) -> None:
        await node.stop()
        await webhooks.stop()  # after the node: the events of its last leaves go out too
        if proxies is not None:
            await proxies.close()

    app.on_startup.append(start_node)
    app.on_cleanup.append(stop_node)
    service = add_conversations(app, config, node, turn_metrics, webhooks)
    add_conversation_reads(app, config, service, rest)
    add_conversation_commands(app, config, node, service, rest)
    _add_pages(app, config, node, keys, service)
    return app


def _add_pages(
    app: web.Application,
    config: Config,
    node: Node,
    keys: KeyRing,
    service: ConversationService | None,
) -> None:
    demo = config.demo
    demo_keys: dict[str, str] = {}
    if demo.enabled:
        demo_keys = add_demo_api(app, node, keys, demo.app, service, PUBLIC_DEMO_SECRET_KEY)
    info = SiteInfo(
        version=version(),
        node=node.node_id,
        mode="demo" if demo.enabled else "configured",
        broker=config.broker.kind,
        apps=[entry.id for entry in config.apps],
        demo_pages=demo.enabled,
        voice_demo=service is not None,
        projects=sorted(service.projects) if service is not None else [],
        demo_keys=demo_keys,
    )
    Pages(static_dir(), info, docs_dir()).add_routes(app)


@dataclass(frozen=True, slots=True)
class Listening:
    host: str
    port: int


# How long a shutdown waits for the closed connections to be released.
CLOSE_WAIT_S = 5.0


async def _drain(node: Node, drain_s: float, reconnects_per_s: float) -> None:
    """Graceful shutdown: going_away to everyone, a short drain, then close 1001."""
    node.announce_shutdown(reconnects_per_s=reconnects_per_s)
    if node.connection_count:
        await asyncio.sleep(drain_s)
    node.close_all(CloseCode.GOING_AWAY)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT_S):
            await node.until_no_connections()


async def serve(
    config: Config,
    on_listening: Callable[[Listening], None],
    stop: asyncio.Event | None = None,
) -> None:
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    shared = app[LEAN_KEY].build(loop)
    assert runner.server is not None
    listener = Listener(shared, runner.server, loop)
    port = await listener.start(config.server.host, config.server.port, config.server.backlog)
    # Everything built so far lives as long as the process: keep it out of the cyclic GC's
    # collections (with thousands of connections, a full collection walks all it tracks).
    gc.freeze()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if CONVERSATIONS_KEY in app:
        host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        app[CONVERSATIONS_KEY].set_base_url(f"http://{host}:{port}")
    on_listening(Listening(config.server.host, port))
    try:
        await stop.wait()
        log.info("shutting down")
        await listener.close()
        await _drain(
            app[NODE_KEY], config.server.shutdown_drain_s, config.server.shutdown_reconnects_per_s
        )
        await shared.wait_closed(timeout_s=3.0)  # the lean connections' close handshakes
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
