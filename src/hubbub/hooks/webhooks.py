"""Webhooks: which endpoint hears which event, and the Pusher-shaped body it is sent in.

:class:`WebhookDispatcher` is the server's :class:`~hubbub.core.events.EventSink` for channel
events and the conversation service's sink for conversation events: one set of
:class:`~hubbub.hooks.webhook_sender.WebhookSender` s (one per configured endpoint) carries
both. A request body is ``{"time_ms": <int>, "events": [...]}`` (spec 16.3):

* channel events: ``{"name", "channel", "user_id"?, "data"?}`` (``data`` is the published
  JSON value itself, not a string);
* conversation events: ``{"name", "conversation_id", "project_id", "user_id"?, ...}`` with
  the fields of each event (``stage_id``, ``reason``, ``tool``, ...).

Each event is encoded once when it is emitted and queued as bytes; the request body is those
bytes joined, so what the signature covers is exactly what the endpoint receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from hubbub.core.events import ChannelEvent, ChannelEventName
from hubbub.hooks.http import HookHttpClient
from hubbub.hooks.webhook_sender import Timing, WebhookSender, WebhookSettings
from hubbub.protocol.patterns import ChannelPattern, compile_pattern, matches_any

_json: Final = msgspec.json.Encoder()


def encode_channel_event(event: ChannelEvent) -> bytes:
    parts = [
        b'{"name":',
        _json.encode(event.name.value),
        b',"channel":',
        _json.encode(event.channel),
    ]
    if event.user_id is not None:
        parts += [b',"user_id":', _json.encode(event.user_id)]
    if event.data is not None:
        parts += [b',"data":', event.data]
    parts.append(b"}")
    return b"".join(parts)


def encode_conversation_event(
    name: str, project_id: str, conversation_id: str, fields: Mapping[str, Any]
) -> bytes:
    body: dict[str, Any] = {
        "name": name,
        "conversation_id": conversation_id,
        "project_id": project_id,
    }
    body.update((key, value) for key, value in fields.items() if value is not None)
    return _json.encode(body)


@dataclass(frozen=True, slots=True)
class ChannelRoute:
    """One ``[[apps.webhooks]]`` entry: the events and channels its endpoint takes."""

    app_id: str
    settings: WebhookSettings
    events: frozenset[str]
    channel_patterns: tuple[str, ...] = ("**",)


@dataclass(frozen=True, slots=True)
class ConversationRoute:
    """One ``[[conversations.webhooks]]`` entry."""

    settings: WebhookSettings
    events: frozenset[str]
    project_ids: frozenset[str] = frozenset()  # empty: every project


@dataclass(frozen=True, slots=True)
class _Target:
    sender: WebhookSender
    events: frozenset[str]
    patterns: tuple[ChannelPattern, ...] | None  # None: every channel


class WebhookDispatcher:
    def __init__(
        self,
        channel_routes: Iterable[ChannelRoute],
        conversation_routes: Iterable[ConversationRoute] = (),
        *,
        client: HookHttpClient | None = None,
        timing: Timing | None = None,
    ) -> None:
        self._client = client or HookHttpClient(user_agent="hubbub-webhooks")
        self.senders: list[WebhookSender] = []
        self._by_app: dict[str, list[_Target]] = {}
        self._wanted: dict[str, frozenset[str]] = {}
        for route in channel_routes:
            sender = self._sender(route.settings, timing)
            every = "**" in route.channel_patterns
            patterns = None if every else tuple(compile_pattern(p) for p in route.channel_patterns)
            self._by_app.setdefault(route.app_id, []).append(
                _Target(sender, route.events, patterns)
            )
            self._wanted[route.app_id] = self._wanted.get(route.app_id, frozenset()) | route.events
        self._conversation: list[tuple[WebhookSender, ConversationRoute]] = [
            (self._sender(route.settings, timing), route) for route in conversation_routes
        ]

    def _sender(self, settings: WebhookSettings, timing: Timing | None) -> WebhookSender:
        sender = WebhookSender(settings, self._client, timing=timing)
        self.senders.append(sender)
        return sender

    @property
    def active(self) -> bool:
        return bool(self.senders)

    def start(self) -> None:
        for sender in self.senders:
            sender.start()

    async def stop(self, drain_s: float = 1.0) -> None:
        for sender in self.senders:
            await sender.stop(drain_s)
        await self._client.close()

    # --- EventSink (channel events) ---------------------------------------------------------

    def wants(self, app_id: str, name: ChannelEventName) -> bool:
        wanted = self._wanted.get(app_id)
        return wanted is not None and name.value in wanted

    def emit(self, event: ChannelEvent) -> None:
        targets = self._by_app.get(event.app_id)
        if not targets:
            return
        encoded: bytes | None = None
        for target in targets:
            if event.name.value not in target.events:
                continue
            if target.patterns is not None and not matches_any(target.patterns, event.channel):
                continue
            if encoded is None:
                encoded = encode_channel_event(event)
            target.sender.enqueue(encoded)

    # --- conversation events ----------------------------------------------------------------

    def wants_conversation_event(self, name: str) -> bool:
        return any(name in route.events for _, route in self._conversation)

    def emit_conversation_event(
        self, name: str, project_id: str, conversation_id: str, fields: Mapping[str, Any]
    ) -> None:
        encoded: bytes | None = None
        for sender, route in self._conversation:
            if name not in route.events:
                continue
            if route.project_ids and project_id not in route.project_ids:
                continue
            if encoded is None:
                encoded = encode_conversation_event(name, project_id, conversation_id, fields)
            sender.enqueue(encoded)
