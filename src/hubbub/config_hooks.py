"""Configuration of what calls the user's backend: webhooks and proxies (spec 16.3, 16.4).

The shapes the spec names are binding (``url``, ``secret``, ``events``, ``channel_patterns``;
``connect_proxy``, ``subscribe_proxy``, ``publish_proxy``, ``proxy_timeout_ms``); the rest
are Hubbub's extensions, each with the default that meets the spec. They are kept apart from
``config.py`` so that file only names them; the checks report through the same
``fail(field, problem)`` as every other check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from hubbub.protocol.patterns import PatternError, compile_pattern

Fail = Callable[[str, str], None]

CHANNEL_EVENTS = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
)
CONVERSATION_EVENTS = ("conversation_started", "conversation_ended", "tool_called")
# Spec 16.3: at most 100 ms or 100 events per request.
MAX_BATCH_EVENTS = 100
MAX_BATCH_DELAY_MS = 100.0
# Forwarded to a connect proxy unless the key names its own list (spec 16.4).
DEFAULT_CONNECT_PROXY_HEADERS = ("cookie", "authorization", "origin", "user-agent")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


class _HookSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _WebhookBase(_HookSection):
    url: str
    # Signs every request (X-Hubbub-Signature); or read from an environment variable or a file.
    secret: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    name: str | None = None  # the label of its metrics; default "<app>#<n>"
    timeout_ms: float = 5000.0  # one request
    batch_max_events: int = MAX_BATCH_EVENTS
    batch_max_delay_ms: float = MAX_BATCH_DELAY_MS
    # Retries: exponential from retry_initial_ms, capped at retry_max_ms, with jitter, until a
    # batch has been retried for retry_window_s (then it is dropped and counted).
    retry_initial_ms: float = 500.0
    retry_max_ms: float = 30_000.0
    retry_window_s: float = 300.0
    # The queue of events not yet sent; past either bound the oldest are dropped and counted.
    queue_max_events: int = 10_000
    queue_max_bytes: int = 16 * 1024 * 1024


class WebhookConfig(_WebhookBase):
    """``[[apps.webhooks]]``: channel events of one app."""

    events: list[str] = msgspec.field(default_factory=lambda: list(CHANNEL_EVENTS))
    channel_patterns: list[str] = msgspec.field(default_factory=lambda: ["**"])


class ConversationWebhookConfig(_WebhookBase):
    """``[[conversations.webhooks]]``: conversation events of every project, or of some."""

    events: list[str] = msgspec.field(default_factory=lambda: list(CONVERSATION_EVENTS))
    project_ids: list[str] = []  # empty: every project


def _check_url(url: str | None, field: str, fail: Fail) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(field, "must be an http:// or https:// URL")


def check_webhook(
    hook: WebhookConfig | ConversationWebhookConfig,
    where: str,
    fail: Fail,
    names: set[str],
) -> None:
    """``names``: the explicit names seen so far (each labels its own metrics)."""
    _check_url(hook.url, f"{where}.url", fail)
    from_elsewhere = hook.secret_env is not None or hook.secret_file is not None
    if not hook.secret and not from_elsewhere:
        fail(f"{where}.secret", "must not be empty (it signs every request)")
    if hook.name is not None:
        if not _NAME.fullmatch(hook.name):
            fail(f"{where}.name", "must be 1-64 characters of A-Z a-z 0-9 _ . : / -")
        elif hook.name in names:
            fail(f"{where}.name", f"another webhook is named {hook.name!r}")
        names.add(hook.name)
    known = CHANNEL_EVENTS if isinstance(hook, WebhookConfig) else CONVERSATION_EVENTS
    if not hook.events:
        fail(f"{where}.events", "needs at least one event")
    for i, event in enumerate(hook.events):
        if event not in known:
            fail(f"{where}.events[{i}]", f"unknown event {event!r} (expected {', '.join(known)})")
    if isinstance(hook, WebhookConfig):
        for p, pattern in enumerate(hook.channel_patterns):
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                fail(f"{where}.channel_patterns[{p}]", str(exc))
    if not 1 <= hook.batch_max_events <= MAX_BATCH_EVENTS:
        fail(f"{where}.batch_max_events", f"must be between 1 and {MAX_BATCH_EVENTS}")
    if not 0 <= hook.batch_max_delay_ms <= MAX_BATCH_DELAY_MS:
        fail(f"{where}.batch_max_delay_ms", f"must be between 0 and {MAX_BATCH_DELAY_MS:g}")
    for name in ("timeout_ms", "retry_initial_ms", "retry_window_s"):
        if not getattr(hook, name) > 0:
            fail(f"{where}.{name}", "must be positive")
    if hook.retry_max_ms < hook.retry_initial_ms:
        fail(f"{where}.retry_max_ms", "must not be less than retry_initial_ms")
    if hook.queue_max_events < hook.batch_max_events:
        fail(f"{where}.queue_max_events", "must be at least batch_max_events")
    if hook.queue_max_bytes < 65536:
        fail(f"{where}.queue_max_bytes", "must be at least 65536 (one full-size event)")


def check_key_proxies(
    kind: str,
    connect_proxy: str | None,
    subscribe_proxy: str | None,
    publish_proxy: str | None,
    proxy_timeout_ms: float,
    connect_proxy_headers: list[str],
    where: str,
    fail: Fail,
) -> None:
    for name, url in (
        ("connect_proxy", connect_proxy),
        ("subscribe_proxy", subscribe_proxy),
        ("publish_proxy", publish_proxy),
    ):
        _check_url(url, f"{where}.{name}", fail)
    if connect_proxy is not None and kind != "publishable":
        fail(
            f"{where}.connect_proxy",
            "only a publishable key connects through a proxy (a token is its own answer)",
        )
    if not proxy_timeout_ms > 0:
        fail(f"{where}.proxy_timeout_ms", "must be positive")
    for i, header in enumerate(connect_proxy_headers):
        if not _HEADER_NAME.fullmatch(header):
            fail(f"{where}.connect_proxy_headers[{i}]", "must be a lower-case HTTP header name")
