"""Wiring of the conversation side: the projects, the service, ``/ws``, WebRTC, and the REST
reads and commands of conversations (split from :mod:`hubbub.server`, which calls it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web

from hubbub.api.conversation_commands import ConversationCommandApi
from hubbub.api.conversations import ConversationReadApi
from hubbub.api.metrics import TurnMetricsRecorder
from hubbub.api.rest import RestApi
from hubbub.auth.client_ip import TrustedProxies
from hubbub.config import Config, ConfigError
from hubbub.console.demo_orders import add_demo_routes
from hubbub.conversation.project.loader import ProjectError, load_projects_dir
from hubbub.conversation.project.schema import LlmConfig
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.store import ConversationStore
from hubbub.conversation.runtime.webhook_client import AiohttpWebhookClient
from hubbub.conversation.session.bus import RealtimeBus
from hubbub.conversation.session.inspect import ConversationInspector
from hubbub.conversation.session.limits import SessionLimits
from hubbub.conversation.session.service import AuthLimits, ConversationService
from hubbub.conversation.session.steering import RELAY_TOPIC, Steering
from hubbub.conversation.voice.providers.registry import create_llm
from hubbub.conversation.voice.speech import speech_stack_for
from hubbub.core.node import Node
from hubbub.core.ratelimit import KeyedRateLimiter
from hubbub.hooks.webhooks import WebhookDispatcher
from hubbub.transports.conversation_ws import ConversationEndpoint
from hubbub.transports.webrtc_settings import PeerLimits, WebRtcSettings
from hubbub.transports.webrtc_signalling import WebRtcEndpoint, add_webrtc_routes

log = logging.getLogger(__name__)

CONVERSATIONS_KEY = web.AppKey("conversations", ConversationService)


def add_conversation_reads(
    app: web.Application, config: Config, service: ConversationService | None, rest: RestApi
) -> None:
    readable = {entry.id: list(entry.conversation_projects) for entry in config.apps}
    if service is not None:
        for app_id, projects in readable.items():
            unknown = sorted(set(projects) - set(service.projects) - {"*"})
            if unknown:
                log.warning(
                    "app %s: conversation_projects names no loaded project: %s",
                    app_id,
                    ", ".join(unknown),
                )
    inspector = ConversationInspector(service) if service is not None else None
    ConversationReadApi(inspector, rest.authorize, readable).add_routes(app)


def add_conversation_commands(
    app: web.Application,
    config: Config,
    node: Node,
    service: ConversationService | None,
    rest: RestApi,
) -> None:
    """The conversation bus's REST commands; with the bus, its relay between nodes."""
    bus = service.services.bus if service is not None else None
    steering = None
    if service is not None and isinstance(bus, RealtimeBus):
        steering = Steering(service, bus, node)
        node.handle_relay(RELAY_TOPIC, steering.answer_relay)
    ConversationCommandApi(steering, config.conversations.events_app, rest.authorize).add_routes(
        app
    )


def add_conversations(
    app: web.Application,
    config: Config,
    node: Node,
    turn_metrics: TurnMetricsRecorder,
    webhooks: WebhookDispatcher,
) -> ConversationService | None:
    settings = config.conversations
    if settings.demo_api:
        add_demo_routes(app)
    if settings.projects_dir is None:
        return None
    try:
        projects = load_projects_dir(Path(settings.projects_dir), TemplateRenderer())
    except ProjectError as exc:
        raise ConfigError(exc.source, exc.path, exc.reason) from None
    default_llm = None
    if settings.llm is not None:
        default_llm = LlmConfig(
            base_url=settings.llm.base_url,
            model=settings.llm.model,
            api_key=settings.llm.api_key,
            timeout_s=settings.llm.timeout_s,
        )
    bus = None
    if settings.events_app:
        bus = RealtimeBus(node, settings.events_app, settings.events_projects)
        unknown = sorted(set(settings.events_projects) - {p.id for p in projects} - {"*"})
        if unknown:
            log.warning("[conversations] events_projects names no loaded project: %s", unknown)
    service = ConversationService(
        projects,
        ConversationStore.from_url(settings.database_url),
        llm_factory=create_llm,
        default_llm=default_llm,
        python_tools=frozenset(settings.python_tools),
        webhooks=AiohttpWebhookClient(),
        auth_limits=AuthLimits(settings.auth_attempts_per_ip, settings.auth_window_s),
        session_limits=SessionLimits(
            rate_per_s=settings.rate_per_second,
            rate_burst=settings.rate_burst,
            max_text_input_chars=settings.max_text_input_chars,
            max_variables_bytes=settings.max_variables_bytes,
            auth_timeout_s=settings.auth_timeout_s,
        ),
        speech=speech_stack_for(projects),
        on_message_event=turn_metrics,
        events=webhooks if config.conversations.webhooks else None,
        bus=bus,
    )
    attempts = settings.connect_attempts_per_ip
    connect_limiter = KeyedRateLimiter(attempts, attempts / settings.connect_window_s)
    endpoint = ConversationEndpoint(
        service,
        TrustedProxies(config.server.trusted_proxies),
        max_message_bytes=settings.max_message_bytes,
        slow_consumer_bytes=config.server.slow_consumer_bytes,
        keepalive_interval_s=config.server.keepalive_interval_s,
        connect_limiter=connect_limiter,
    )
    app[CONVERSATIONS_KEY] = service
    app.router.add_get("/ws", endpoint.handle)
    add_webrtc_routes(app, _webrtc_endpoint(config, service, connect_limiter))

    async def close_sockets(app: web.Application) -> None:
        await endpoint.close_all()

    # on_shutdown runs before on_cleanup: sessions close (1001) while the engine is still up.
    app.on_shutdown.append(close_sockets)

    async def start(app: web.Application) -> None:
        await service.start()

    async def stop(app: web.Application) -> None:
        await service.stop()
        if bus is not None:
            await bus.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return service


def _webrtc_endpoint(
    config: Config, service: ConversationService, connect_limiter: KeyedRateLimiter
) -> WebRtcEndpoint:
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
                max_message_bytes=config.conversations.max_message_bytes,
            ),
        ),
        connect_limiter,
    )
