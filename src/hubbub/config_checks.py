"""Checks of meaning over a parsed configuration: each problem is one ``fail(field, problem)``
call, so every problem of a file is reported at once (see :mod:`hubbub.config`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from hubbub.auth.keys import LEGACY_SECRET_PREFIX
from hubbub.config_hooks import check_key_proxies, check_webhook
from hubbub.config_schema import (
    ALL_ACTIONS,
    ICE_URL_SCHEMES,
    MAX_HISTORY_SIZE,
    MAX_ICE_CREDENTIAL_LENGTH,
    MAX_ICE_SERVERS,
    MAX_ICE_URL_LENGTH,
    MAX_KEYS_PER_APP,
    BrokerConfig,
    ChannelConfig,
    Config,
    KeyConfig,
)
from hubbub.protocol.patterns import ChannelPattern, PatternError, compile_pattern, covers
from hubbub.protocol.validation import ACTIONS, is_valid_peer_id


def check_config(config: Config, fail: Callable[[str, str], None]) -> None:
    """Report every problem of meaning in ``config`` through ``fail``."""
    server, limits = config.server, config.limits
    if not 0 <= server.port <= 65535:
        fail("server.port", "must be between 0 and 65535")
    for name in ("connect_window_s", "keepalive_interval_s", "keepalive_timeout_s"):
        if getattr(server, name) <= 0:
            fail(f"server.{name}", "must be positive")
    for name in (
        "connect_attempts_per_ip",
        "slow_consumer_bytes",
        "shutdown_drain_s",
        "shutdown_reconnects_per_s",
    ):
        if getattr(server, name) < 0:
            fail(f"server.{name}", "must not be negative")
    for name in ("dedup_window_s", "history_memory_bytes", "dedup_memory_ids", "backlog"):
        if getattr(server, name) <= 0:
            fail(f"server.{name}", "must be positive")
    for name in ("rate_per_second", "rate_burst", "max_message_bytes", "max_channels"):
        if getattr(limits, name) < 0:
            fail(f"limits.{name}", "must not be negative (0 disables the limit)")
    if (limits.rate_per_second == 0) != (limits.rate_burst == 0):
        fail("limits.rate_burst", "rate_per_second and rate_burst must both be 0 or both set")

    _check_broker(config.broker, fail)
    for name in (
        "requests_per_second_per_key",
        "request_burst_per_key",
        "requests_per_second_per_ip",
        "request_burst_per_ip",
    ):
        if getattr(config.api, name) < 0:
            fail(f"api.{name}", "must not be negative (0 disables the limit)")
    for scope in ("key", "ip"):
        rate = getattr(config.api, f"requests_per_second_per_{scope}")
        burst = getattr(config.api, f"request_burst_per_{scope}")
        if (rate == 0) != (burst == 0):
            fail(
                f"api.request_burst_per_{scope}",
                f"requests_per_second_per_{scope} and request_burst_per_{scope} must both be 0 "
                "or both set",
            )
    conversations = config.conversations
    if conversations.auth_attempts_per_ip < 0:
        fail("conversations.auth_attempts_per_ip", "must not be negative (0 disables the limit)")
    if conversations.auth_window_s <= 0:
        fail("conversations.auth_window_s", "must be positive")
    if conversations.max_message_bytes <= 0:
        fail("conversations.max_message_bytes", "must be positive")
    for name in (
        "rate_per_second",
        "rate_burst",
        "max_text_input_chars",
        "max_variables_bytes",
        "auth_timeout_s",
        "connect_attempts_per_ip",
    ):
        if getattr(conversations, name) < 0:
            fail(f"conversations.{name}", "must not be negative (0 disables the limit)")
    if conversations.connect_window_s <= 0:
        fail("conversations.connect_window_s", "must be positive")
    for i, target in enumerate(conversations.python_tools):
        module, _, function = target.partition(":")
        if not module or not function:
            fail(f"conversations.python_tools[{i}]", "expected 'package.module:function'")
    webhook_names: set[str] = set()
    for w, conversation_hook in enumerate(conversations.webhooks):
        check_webhook(conversation_hook, f"conversations.webhooks[{w}]", fail, webhook_names)

    webrtc = config.webrtc
    if webrtc.ice_gathering_timeout_ms is not None and webrtc.ice_gathering_timeout_ms <= 0:
        fail("webrtc.ice_gathering_timeout_ms", "must be positive")
    if webrtc.max_peer_connections < 0:
        fail("webrtc.max_peer_connections", "must not be negative (0 disables WebRTC)")
    if webrtc.max_peer_connections_per_ip < 0:
        fail("webrtc.max_peer_connections_per_ip", "must not be negative")
    if webrtc.control_open_timeout_s <= 0:
        fail("webrtc.control_open_timeout_s", "must be positive")

    app_ids: set[str] = set()
    key_ids: set[str] = set()
    legacy_secrets: set[str] = set()
    for a, app in enumerate(config.apps):
        where = f"apps[{a}]"
        if not app.id:
            fail(f"{where}.id", "must not be empty")
        if app.id in app_ids:
            fail(f"{where}.id", f"duplicate app id {app.id!r}")
        app_ids.add(app.id)
        if len(app.keys) > MAX_KEYS_PER_APP:
            fail(f"{where}.keys", f"an app has at most {MAX_KEYS_PER_APP} keys")
        for name in ("max_concurrent_connections", "max_messages_per_period"):
            if (getattr(app, name) or 0) < 0:
                fail(f"{where}.{name}", "must not be negative (leave it out for no limit)")
        if app.message_period_s <= 0:
            fail(f"{where}.message_period_s", "must be positive")
        for j, project in enumerate(app.conversation_projects):
            if not project or not project.strip():
                fail(f"{where}.conversation_projects[{j}]", 'must be a project id or "*"')
        for w, hook in enumerate(app.webhooks):
            check_webhook(hook, f"{where}.webhooks[{w}]", fail, webhook_names)
        _check_channels(app.channels, f"{where}.channels", fail)
        for k, key in enumerate(app.keys):
            kwhere = f"{where}.keys[{k}]"
            if not is_valid_peer_id(key.id) or ":" in key.id:
                fail(f"{kwhere}.id", "must be 1-128 printable ASCII characters without ':'")
            if key.id in key_ids:
                fail(f"{kwhere}.id", f"duplicate key id {key.id!r}")
            key_ids.add(key.id)
            from_elsewhere = key.secret_env is not None or key.secret_file is not None
            if key.kind == "secret" and not key.secret and not from_elsewhere:
                fail(f"{kwhere}.secret", "a secret key needs a non-empty secret")
            if key.secret and key.secret.startswith(LEGACY_SECRET_PREFIX):
                if key.secret in legacy_secrets:
                    fail(f"{kwhere}.secret", "two keys share the same sk_live_ secret")
                legacy_secrets.add(key.secret)
            _check_ice(key, kwhere, fail)
            check_key_proxies(
                key.kind,
                key.connect_proxy,
                key.subscribe_proxy,
                key.publish_proxy,
                key.proxy_timeout_ms,
                key.connect_proxy_headers,
                kwhere,
                fail,
            )
            if key.kind == "publishable" and (key.secret is not None or from_elsewhere):
                fail(f"{kwhere}.secret", "a publishable key has no secret")
            for p, pattern in enumerate(key.channel_patterns):
                try:
                    compile_pattern(pattern)
                except PatternError as exc:
                    fail(f"{kwhere}.channel_patterns[{p}]", str(exc))
            for i, action in enumerate(key.actions or []):
                if action not in ACTIONS:
                    fail(
                        f"{kwhere}.actions[{i}]",
                        f"unknown action {action!r} (expected one of {', '.join(ALL_ACTIONS)})",
                    )

    conversations = config.conversations
    if conversations.events_app:
        bus_app = next((a for a in config.apps if a.id == conversations.events_app), None)
        if bus_app is None:
            fail("conversations.events_app", f"no app {conversations.events_app!r}")
        elif not any(k.kind == "secret" for k in bus_app.keys):
            fail(
                "conversations.events_app",
                f"app {conversations.events_app!r} has no secret key to steer conversations with",
            )
    for i, project_id in enumerate(conversations.events_projects):
        if not project_id or not project_id.isprintable():
            fail(f"conversations.events_projects[{i}]", 'must be a project id or "*"')

    demo = config.demo
    if demo.enabled:
        demo_app = next((a for a in config.apps if a.id == demo.app), None)
        if demo_app is None:
            fail("demo.app", f"no app {demo.app!r} (the demo pages need one)")
        elif not any(k.kind == "secret" for k in demo_app.keys):
            fail("demo.app", f"app {demo.app!r} has no secret key to sign the demo tokens")


def _check_broker(broker: BrokerConfig, fail: Callable[[str, str], None]) -> None:
    urls = [broker.url] if isinstance(broker.url, str) else broker.url
    if not urls:
        fail("broker.url", "needs at least one URL")
    for i, url in enumerate(urls):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            where = "broker.url" if isinstance(broker.url, str) else f"broker.url[{i}]"
            fail(where, "must be a redis://, rediss:// or unix:// URL")
    if broker.presence_ttl_s <= 0:
        fail("broker.presence_ttl_s", "must be positive")
    if broker.max_connections < 1:
        fail("broker.max_connections", "must be positive")
    if broker.node_id and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", broker.node_id):
        fail("broker.node_id", "must be 1-64 characters of A-Z a-z 0-9 _ . -")
    if not broker.key_prefix or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", broker.key_prefix):
        fail("broker.key_prefix", "must be 1-64 characters of A-Z a-z 0-9 _ . -")


def _check_channels(
    channels: list[ChannelConfig], where: str, fail: Callable[[str, str], None]
) -> None:
    """Patterns compile, bounds hold, and no entry is hidden behind an earlier one (first
    match wins, so an entry whose every channel an earlier pattern matches is a mistake)."""
    earlier: list[ChannelPattern] = []
    for c, entry in enumerate(channels):
        cwhere = f"{where}[{c}]"
        try:
            pattern = compile_pattern(entry.pattern)
        except PatternError as exc:
            fail(f"{cwhere}.pattern", str(exc))
            continue
        if earlier and covers(earlier, pattern):
            fail(
                f"{cwhere}.pattern",
                f"never used: an earlier entry already matches every channel {entry.pattern!r} "
                "matches (the first match wins)",
            )
        earlier.append(pattern)
        if not 0 <= entry.history_size <= MAX_HISTORY_SIZE:
            fail(f"{cwhere}.history_size", f"must be from 0 to {MAX_HISTORY_SIZE}")
        if entry.history_ttl_s <= 0:
            fail(f"{cwhere}.history_ttl_s", "must be positive")


def _check_ice(key: KeyConfig, where: str, fail: Callable[[str, str], None]) -> None:
    """Spec 11.4: the SDK drops *every* ICE server when one entry breaks a rule."""
    total = len(key.ice_servers) + (1 if key.turn is not None else 0)
    if total > MAX_ICE_SERVERS:
        fail(f"{where}.ice_servers", f"at most {MAX_ICE_SERVERS} entries (turn counts as one)")

    def check_urls(urls: list[str], field: str) -> None:
        if not urls:
            fail(field, "needs at least one URL")
        for u, url in enumerate(urls):
            if not url.lower().startswith(ICE_URL_SCHEMES) or len(url) > MAX_ICE_URL_LENGTH:
                fail(
                    f"{field}[{u}]",
                    f"must start with stun:, stuns:, turn: or turns: and be at most "
                    f"{MAX_ICE_URL_LENGTH} characters",
                )

    for i, server in enumerate(key.ice_servers):
        urls = [server.urls] if isinstance(server.urls, str) else server.urls
        check_urls(urls, f"{where}.ice_servers[{i}].urls")
        for name in ("username", "credential"):
            value = getattr(server, name)
            if value is not None and len(value) > MAX_ICE_CREDENTIAL_LENGTH:
                fail(f"{where}.ice_servers[{i}].{name}", "longer than 1024 characters")
    if key.turn is not None:
        check_urls(key.turn.urls, f"{where}.turn.urls")
        turn = key.turn
        from_elsewhere = turn.shared_secret_env is not None or turn.shared_secret_file is not None
        if not turn.shared_secret and not from_elsewhere:
            fail(f"{where}.turn.shared_secret", "must not be empty")
        if key.turn.ttl_s <= 0:
            fail(f"{where}.turn.ttl_s", "must be positive")
