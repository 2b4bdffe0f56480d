"""Wiring: the only place that picks concrete implementations and puts the parts together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from hubbub.api.errors import api_errors
from hubbub.api.metrics import TurnMetricsRecorder, build_metrics, metrics_handler
from hubbub.api.rest import RestApi, RestSettings
from hubbub.auth.client_ip import TrustedProxies
from hubbub.auth.keys import KeyRing
from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.brokers.memory_history import MemoryHistoryStore
from hubbub.brokers.redis_broker import RedisBroker
from hubbub.brokers.redis_history import RedisHistoryStore
from hubbub.brokers.redis_link import RedisLink, RedisShards
from hubbub.brokers.redis_stores import RedisPresenceStore, RedisUsageStore
from hubbub.config import Config, ConfigError
from hubbub.console import STATIC_DIR
from hubbub.conversation.loader import ProjectError, load_projects_dir
from hubbub.conversation.providers.base import LlmProvider
from hubbub.conversation.providers.openai_llm import OpenAiCompatibleLlm
from hubbub.conversation.schema import LlmConfig
from hubbub.conversation.service import AuthLimits, ConversationService
from hubbub.conversation.speech import SpeechStack
from hubbub.conversation.store import ConversationStore
from hubbub.conversation.templates import TemplateRenderer
from hubbub.core.broker import AppQuota, Broker, PresenceStore, UsageStore
from hubbub.core.connection import Cancellable
from hubbub.core.history import HistoryStore, Retention, RetentionRule, RetentionRules
from hubbub.core.node import Node, NodeLimits
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.patterns import compile_pattern
from hubbub.transports.conversation_ws import ConversationEndpoint
from hubbub.transports.demo_api import add_demo_routes
from hubbub.transports.webhook_client import AiohttpWebhookClient
from hubbub.transports.webrtc import PeerLimits
from hubbub.transports.webrtc_signalling import WebRtcEndpoint, WebRtcSettings, add_webrtc_routes
from hubbub.transports.websocket import RealtimeEndpoint, WebSocketSettings

log = logging.getLogger(__name__)

NODE_KEY = web.AppKey("node", Node)
KEYS_KEY = web.AppKey("keys", KeyRing)
CONFIG_KEY = web.AppKey("config", Config)
CONVERSATIONS_KEY = web.AppKey("conversations", ConversationService)


class _LoopScheduler:
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback)


def _backends(
    config: Config, node_id: str
) -> tuple[Broker, PresenceStore, UsageStore, HistoryStore]:
    settings = config.broker
    if settings.kind == "memory":
        history = MemoryHistoryStore(
            max_bytes=config.server.history_memory_bytes,
            max_message_ids=config.server.dedup_memory_ids,
        )
        return MemoryBroker(history), MemoryPresenceStore(), MemoryUsageStore(), history
    urls = [settings.url] if isinstance(settings.url, str) else settings.url
    shards = RedisShards([RedisLink(url, cluster=settings.cluster) for url in urls])
    prefix = settings.key_prefix
    presence = RedisPresenceStore(shards, prefix, node_id)
    usage = RedisUsageStore(shards, prefix, node_id)
    redis_history = RedisHistoryStore(shards, prefix)
    broker = RedisBroker(
        shards,
        presence,
        usage,
        node_id=node_id,
        prefix=prefix,
        presence_ttl_s=settings.presence_ttl_s,
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


def build_node(config: Config) -> Node:
    limits = config.limits
    node_id = config.broker.node_id or uuid.uuid4().hex[:12]
    broker, presence, usage, history = _backends(config, node_id)
    return Node(
        node_id=node_id,
        broker=broker,
        presence=presence,
        usage=usage,
        limits=NodeLimits(
            rate_per_second=limits.rate_per_second,
            rate_burst=limits.rate_burst,
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
        scheduler=_LoopScheduler(),
        history=history,
        retention=retention_rules(config),
        dedup_window_s=config.server.dedup_window_s,
    )


async def _health(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return web.json_response({"status": "ok", "connections": node.connection_count})


def build_app(config: Config) -> web.Application:
    keys = KeyRing.from_config(config)
    node = build_node(config)
    server = config.server
    endpoint = RealtimeEndpoint(
        node,
        keys,
        WebSocketSettings(
            max_message_bytes=config.limits.max_message_bytes,
            slow_consumer_bytes=server.slow_consumer_bytes,
            snapshot_delay_s=server.snapshot_delay_ms / 1000,
            keepalive_interval_s=server.keepalive_interval_s,
            keepalive_timeout_s=server.keepalive_timeout_s,
            connect_attempts_per_ip=server.connect_attempts_per_ip,
            connect_window_s=server.connect_window_s,
        ),
        TrustedProxies(server.trusted_proxies),
    )
    app = web.Application()
    app[NODE_KEY] = node
    app[KEYS_KEY] = keys
    app[CONFIG_KEY] = config
    app.router.add_get("/v1", endpoint.handle)
    app.router.add_get("/healthz", _health)
    metrics_registry, turn_metrics = build_metrics(node)
    app.router.add_get("/metrics", metrics_handler(metrics_registry))
    app.middlewares.append(api_errors)
    api = config.api
    RestApi(
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
    ).add_routes(app)

    async def start_node(app: web.Application) -> None:
        await node.start()

    async def stop_node(app: web.Application) -> None:
        await node.stop()

    app.on_startup.append(start_node)
    app.on_cleanup.append(stop_node)
    _add_conversations(app, config, turn_metrics)
    return app


def _openai_llm(config: LlmConfig) -> LlmProvider:
    api_key = config.api_key
    if api_key is None and config.api_key_env:
        api_key = os.environ.get(config.api_key_env)
    return OpenAiCompatibleLlm(
        base_url=config.base_url, api_key=api_key, model=config.model, timeout_s=config.timeout_s
    )


def _add_conversations(
    app: web.Application, config: Config, turn_metrics: TurnMetricsRecorder
) -> None:
    settings = config.conversations
    if settings.demo_api:
        add_demo_routes(app)
    if settings.projects_dir is None:
        return
    try:
        projects = load_projects_dir(Path(settings.projects_dir), TemplateRenderer())
    except ProjectError as exc:
        raise ConfigError(exc.source, exc.path, exc.reason) from None
    default_llm = None
    if settings.llm is not None:
        default_llm = LlmConfig(
            base_url=settings.llm.base_url,
            model=settings.llm.model,
            api_key_env=settings.llm.api_key_env,
            timeout_s=settings.llm.timeout_s,
        )
    service = ConversationService(
        projects,
        ConversationStore.from_url(settings.database_url),
        llm_factory=_openai_llm,
        default_llm=default_llm,
        python_tools=frozenset(settings.python_tools),
        webhooks=AiohttpWebhookClient(),
        auth_limits=AuthLimits(settings.auth_attempts_per_ip, settings.auth_window_s),
        speech=SpeechStack() if SpeechStack.available() else None,
        on_message_event=turn_metrics,
    )
    endpoint = ConversationEndpoint(
        service,
        TrustedProxies(config.server.trusted_proxies),
        max_message_bytes=settings.max_message_bytes,
        slow_consumer_bytes=config.server.slow_consumer_bytes,
        keepalive_interval_s=config.server.keepalive_interval_s,
    )
    app[CONVERSATIONS_KEY] = service
    app.router.add_get("/ws", endpoint.handle)
    add_webrtc_routes(app, _webrtc_endpoint(config, service))
    app.router.add_get("/demo/voice", _voice_demo_page)

    async def start(app: web.Application) -> None:
        await service.start()

    async def stop(app: web.Application) -> None:
        await service.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


async def _voice_demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "voice.html")


def _webrtc_endpoint(config: Config, service: ConversationService) -> WebRtcEndpoint:
    webrtc = config.webrtc
    return WebRtcEndpoint(
        service,
        TrustedProxies(config.server.trusted_proxies),
        WebRtcSettings(
            stun_url=webrtc.resolved_stun_url(os.environ),
            ice_gathering_timeout_s=webrtc.resolved_ice_gathering_timeout_ms(os.environ) / 1000,
            max_peer_connections=webrtc.max_peer_connections,
            max_peer_connections_per_ip=webrtc.max_peer_connections_per_ip,
            peer=PeerLimits(
                control_open_timeout_s=webrtc.control_open_timeout_s,
                slow_consumer_bytes=config.server.slow_consumer_bytes,
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class Listening:
    host: str
    port: int


async def _drain(node: Node, drain_s: float) -> None:
    """Graceful shutdown: going_away to everyone, a short drain, then close 1001."""
    node.announce_shutdown()
    if node.connection_count:
        await asyncio.sleep(drain_s)
    node.close_all(CloseCode.GOING_AWAY)
    deadline = time.monotonic() + 5.0
    while node.connection_count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def serve(
    config: Config,
    on_listening: Callable[[Listening], None],
    stop: asyncio.Event | None = None,
) -> None:
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    port = config.server.port
    for address in runner.addresses:
        if isinstance(address, tuple):
            port = int(address[1])
            break
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if CONVERSATIONS_KEY in app:
        host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        app[CONVERSATIONS_KEY].set_base_url(f"http://{host}:{port}")
    on_listening(Listening(config.server.host, port))
    try:
        await stop.wait()
        log.info("shutting down")
        await site.stop()
        await _drain(app[NODE_KEY], config.server.shutdown_drain_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
