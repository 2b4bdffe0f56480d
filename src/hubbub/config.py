"""TOML configuration: the file's shape is a contract other tools rely on.

Loading validates everything up front and reports **every** problem of the file as a
:class:`ConfigError` whose lines each name the file, the field (a dotted path such as
``apps[0].keys[1].actions``) and the problem, so ``hubbub serve`` can stop with exit code 2
before it binds a port. The environment can override fields and hold secrets
(:mod:`hubbub.config_sources`); problems with those name the variable.

A check of meaning is one ``fail(field, problem)`` call: checks collect, they do not stop.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from hubbub.api.rest import RestSettings
from hubbub.auth.keys import LEGACY_SECRET_PREFIX, IceServer, KeyRing, KeySpec, TurnServer
from hubbub.config_hooks import (
    DEFAULT_CONNECT_PROXY_HEADERS,
    ConversationWebhookConfig,
    WebhookConfig,
    check_key_proxies,
    check_webhook,
)
from hubbub.config_shape import UNUSABLE, check_struct
from hubbub.config_sources import ENV_SOURCE, apply_environment, resolve_secrets
from hubbub.console import demo_projects_dir
from hubbub.core.node import NodeLimits
from hubbub.errors import HubbubError
from hubbub.protocol.patterns import ChannelPattern, PatternError, compile_pattern, covers
from hubbub.protocol.validation import ACTIONS, is_valid_peer_id
from hubbub.transports.webrtc_settings import (
    DEFAULT_ICE_GATHERING_TIMEOUT_MS,
    DEFAULT_STUN_URL,
    PeerLimits,
    WebRtcSettings,
)

ALL_ACTIONS = ["publish", "subscribe", "presence", "send"]
MAX_KEYS_PER_APP = 50  # spec section 8.1
# What the SDK accepts in welcome.metadata.iceServers (spec 11.4).
MAX_ICE_SERVERS = 16
MAX_ICE_URL_LENGTH = 512
MAX_ICE_CREDENTIAL_LENGTH = 1024
ICE_URL_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
# A subscribe with ``since`` replays up to a whole history in one go: keep that bounded.
MAX_HISTORY_SIZE = 10_000


def _default(settings: type[Any], name: str) -> Any:
    """The default of a settings dataclass's field: those classes are the one source of
    defaults, and the file's sections repeat none."""
    return next(f.default for f in dataclasses.fields(settings) if f.name == name)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    source: str  # the file, or "<environment>"
    field: str  # a dotted path, or the environment variable's name
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.problem}"


class ConfigError(HubbubError):
    """One or more problems; ``source``/``field``/``problem`` are the first one's."""

    def __init__(
        self, source: str, field: str, problem: str, more: Sequence[ConfigProblem] = ()
    ) -> None:
        self.problems = [ConfigProblem(source, field, problem), *more]
        super().__init__("\n".join(str(p) for p in self.problems))
        self.source = source
        self.field = field
        self.problem = problem

    @classmethod
    def of(cls, problems: Sequence[ConfigProblem]) -> ConfigError:
        first = problems[0]
        return cls(first.source, first.field, first.problem, problems[1:])


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    # Requests from these addresses may name the client in X-Forwarded-For.
    trusted_proxies: list[str] = []
    connect_attempts_per_ip: int = 60  # per connect_window_s; 0 disables
    connect_window_s: float = 60.0
    shutdown_drain_s: float = 1.0
    keepalive_interval_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    # Bytes a connection may have queued but unsent before it is dropped as a slow consumer.
    slow_consumer_bytes: int = _default(PeerLimits, "slow_consumer_bytes")
    # Pause between a subscribe's ack and its presence snapshot (see spec section 13).
    snapshot_delay_ms: float = 5.0
    # A publish repeating a messageId within this window is not delivered again (spec 16.2).
    dedup_window_s: float = 120.0
    # The memory broker's bounds: retained history (bytes, estimated) and remembered message
    # ids; beyond them the least recently used channels / oldest ids are evicted (counted).
    history_memory_bytes: int = 64 * 1024 * 1024
    dedup_memory_ids: int = 200_000


class LimitsConfig(_Section):
    rate_per_second: float = _default(NodeLimits, "rate_per_second")
    rate_burst: int = _default(NodeLimits, "rate_burst")
    max_message_bytes: int = _default(NodeLimits, "max_message_bytes")
    max_channels: int = _default(NodeLimits, "max_channels")


class ApiConfig(_Section):
    """The REST control plane's request limits (0 disables a limit)."""

    requests_per_second_per_key: float = _default(RestSettings, "requests_per_second_per_key")
    request_burst_per_key: int = _default(RestSettings, "request_burst_per_key")
    requests_per_second_per_ip: float = _default(RestSettings, "requests_per_second_per_ip")
    request_burst_per_ip: int = _default(RestSettings, "request_burst_per_ip")


class IceServerConfig(_Section):
    """One RTCIceServer entry, exactly as browsers and the SDK take it (spec 11.4)."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None


class TurnConfig(_Section):
    """A TURN server that accepts time-limited credentials (coturn ``use-auth-secret``)."""

    urls: list[str]
    # One of the three (see hubbub.config_sources: secrets out of files).
    shared_secret: str | None = None
    shared_secret_env: str | None = None
    shared_secret_file: str | None = None
    ttl_s: int = 86400


class KeyConfig(_Section):
    id: str
    kind: Literal["publishable", "secret"]
    # A secret key's secret: inline, or from an environment variable or a file.
    secret: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    channel_patterns: list[str] = msgspec.field(default_factory=lambda: ["**"])
    # None means the kind's default: publishable keys have "send" off, as on the hosted service.
    actions: list[str] | None = None
    allowed_origins: list[str] = []
    # Injected as welcome.metadata.iceServers (pk keys; JWTs without their own iceServers)
    # and into tokens this key mints.
    ice_servers: list[IceServerConfig] = []
    turn: TurnConfig | None = None
    # Backend proxies (spec 16.4; see config_hooks).
    connect_proxy: str | None = None
    subscribe_proxy: str | None = None
    publish_proxy: str | None = None
    proxy_timeout_ms: float = 1000.0
    connect_proxy_headers: list[str] = msgspec.field(
        default_factory=lambda: list(DEFAULT_CONNECT_PROXY_HEADERS)
    )

    def effective_actions(self) -> frozenset[str]:
        if self.actions is not None:
            return frozenset(self.actions)
        if self.kind == "publishable":
            return frozenset({"publish", "subscribe", "presence"})
        return frozenset(ALL_ACTIONS)


class BrokerConfig(_Section):
    """How nodes share state: "memory" is one process, "redis" makes many processes one server."""

    kind: Literal["memory", "redis"] = "memory"
    # One URL, or a list of URLs of independent Redis servers (client-side sharding).
    url: str | list[str] = "redis://127.0.0.1:6379/0"
    node_id: str = ""  # empty: a random id per process
    presence_ttl_s: float = 30.0  # how long a dead node's peers stay visible at most
    key_prefix: str = "hubbub"
    # True when url points at a Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH).
    cluster: bool = False


class ChannelConfig(_Section):
    """``[[apps.channels]]``: history for the channels matching ``pattern`` (spec 16.1).

    Entries are tried in file order and the first match wins; ``history_size = 0`` means no
    history, so a narrow entry placed first can exempt channels from a broad one."""

    pattern: str
    history_size: int = 0
    history_ttl_s: float = 600.0


class AppConfig(_Section):
    id: str
    keys: list[KeyConfig] = []
    channels: list[ChannelConfig] = []
    # Plan limits (None = unlimited): close 4010 at connect, over_message_quota on publish/send.
    max_concurrent_connections: int | None = None
    max_messages_per_period: int | None = None
    message_period_s: int = 30 * 24 * 3600
    plan_name: str | None = None
    # Conversation projects (by id, "*" for all) whose conversations this app's secret keys
    # may list and read over REST (GET /v1/conversations...). None by default.
    conversation_projects: list[str] = []
    webhooks: list[WebhookConfig] = []  # spec 16.3


class ConversationLlmConfig(_Section):
    """The LLM for projects that name none (an OpenAI-compatible chat-completions API)."""

    base_url: str
    model: str
    # Optional (local servers need none): inline, from an environment variable, or a file.
    api_key: str | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    timeout_s: float = 30.0


class ConversationsConfig(_Section):
    # Directory of project files (YAML); None serves no conversations (demo mode: the examples).
    projects_dir: str | None = None
    database_url: str = "sqlite+aiosqlite:///hubbub-conversations.db"
    auth_attempts_per_ip: int = 10  # per auth_window_s; 0 disables
    auth_window_s: float = 900.0
    # "module:function" callables that project files may use as python tools.
    python_tools: list[str] = []
    max_message_bytes: int = 1_048_576
    # Serve the demo order-status API (GET /demo/api/orders/{id}) the support-desk demo uses.
    demo_api: bool = False
    llm: ConversationLlmConfig | None = None
    webhooks: list[ConversationWebhookConfig] = []  # conversation events, signed like apps'


class DemoConfig(_Section):
    """The demo pages' helpers (``/demo/api/token``, ``/demo/api/devices/...``, the voice
    demo's project list). On in demo mode; anywhere else only when asked for, because they
    hand out tokens of ``app`` to anyone who can reach the server."""

    enabled: bool = False
    app: str = "demo"  # its first secret key signs the demo pages' tokens


class WebRtcConfig(_Section):
    """WebRTC conversations (``POST /api/webrtc/offer``). ``stun_url`` and
    ``ice_gathering_timeout_ms`` left unset come from the environment variables
    ``WEBRTC_STUN_URL`` and ``WEBRTC_ICE_GATHERING_TIMEOUT_MS``, then from the defaults below."""

    stun_url: str | None = None  # default DEFAULT_STUN_URL; "" disables STUN
    ice_gathering_timeout_ms: float | None = None  # default DEFAULT_ICE_GATHERING_TIMEOUT_MS
    max_peer_connections: int = _default(WebRtcSettings, "max_peer_connections")
    max_peer_connections_per_ip: int = _default(WebRtcSettings, "max_peer_connections_per_ip")
    # After the answer, for the client to open control.
    control_open_timeout_s: float = _default(PeerLimits, "control_open_timeout_s")

    def resolved_stun_url(self, environ: Mapping[str, str]) -> str:
        if self.stun_url is not None:
            return self.stun_url
        return environ.get("WEBRTC_STUN_URL", DEFAULT_STUN_URL)

    def resolved_ice_gathering_timeout_ms(self, environ: Mapping[str, str]) -> float:
        """Raises :class:`ConfigError` for an environment value that is not a positive number."""
        if self.ice_gathering_timeout_ms is not None:
            return self.ice_gathering_timeout_ms
        raw = environ.get("WEBRTC_ICE_GATHERING_TIMEOUT_MS")
        if raw is None:
            return DEFAULT_ICE_GATHERING_TIMEOUT_MS
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ConfigError(
                "<environment>", "WEBRTC_ICE_GATHERING_TIMEOUT_MS", "must be positive"
            )
        return value


class Config(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    apps: list[AppConfig] = []
    conversations: ConversationsConfig = msgspec.field(default_factory=ConversationsConfig)
    webrtc: WebRtcConfig = msgspec.field(default_factory=WebRtcConfig)
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)


# The demo app's secret key: printed by the demo banner and in the docs, public by design (the
# landing page links the console signed in with it, but only while it is this very key).
PUBLIC_DEMO_SECRET_KEY: Final = ("sk_id_demo", "sk_secret_demo")

DEMO_CONFIG_TOML = """\
[server]
host = "127.0.0.1"
port = 8080

[limits]
rate_per_second = 100
rate_burst = 200
max_message_bytes = 65536
max_channels = 100

[demo]
enabled = true
app = "demo"

[[apps]]
id = "demo"
conversation_projects = ["support-desk"]

# The chat demo's rooms keep their last 100 messages for an hour (the console reads them).
[[apps.channels]]
pattern = "chat/**"
history_size = 100
history_ttl_s = 3600

[[apps.keys]]
id = "pk_live_demo"
kind = "publishable"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]
allowed_origins = []

[[apps.keys]]
id = "sk_id_demo"
kind = "secret"
secret = "sk_secret_demo"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]
"""


def parse_config(
    text: str,
    source: str = "<config>",
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """The configuration in ``text``, with overrides and secrets from ``environ`` (none when
    None); relative secret files are read from ``base_dir``. Raises :class:`ConfigError`
    listing every problem."""
    environ = environ or {}
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(document)", f"not valid TOML: {exc}") from None
    problems: list[ConfigProblem] = []
    from_environment: dict[str, str] = {}

    def fail(field: str, problem: str) -> None:
        for path, variable in from_environment.items():
            if field == path or field.startswith((path + ".", path + "[")):
                problems.append(ConfigProblem(ENV_SOURCE, variable, problem))
                return
        problems.append(ConfigProblem(source, field, problem))

    def fail_env(variable: str, problem: str) -> None:
        problems.append(ConfigProblem(ENV_SOURCE, variable, problem))

    from_environment.update(apply_environment(raw, environ, Config, fail_env))
    checked = check_struct(raw, Config, "", fail)
    if checked is not UNUSABLE:
        config = msgspec.convert(checked, Config)
        resolve_secrets(config, environ, base_dir, fail)
        _check(config, fail)
    if problems:
        raise ConfigError.of(problems)
    return config


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "(file)", "not UTF-8 text") from None
    config = parse_config(text, source, environ=environ, base_dir=Path(path).parent)
    projects_dir = config.conversations.projects_dir
    if projects_dir is not None and not Path(projects_dir).is_absolute():
        # Relative to the file that names it, so a config and its projects travel together.
        config.conversations.projects_dir = str(Path(path).parent / projects_dir)
    return config


def demo_config(environ: Mapping[str, str] | None = None) -> Config:
    config = parse_config(DEMO_CONFIG_TOML, "<demo>", environ=environ)
    config.conversations.projects_dir = str(demo_projects_dir())
    config.conversations.demo_api = True
    return config


def key_specs(config: Config) -> list[KeySpec]:
    """Every app's keys, translated into auth's own specification."""
    return [_key_spec(app.id, key) for app in config.apps for key in app.keys]


def key_ring_of(config: Config) -> KeyRing:
    return KeyRing.from_specs(key_specs(config), [app.id for app in config.apps])


def _key_spec(app_id: str, key: KeyConfig) -> KeySpec:
    turn = None
    if key.turn is not None:
        secret = key.turn.shared_secret
        assert secret, "loading resolves shared_secret_env/_file and refuses an empty secret"
        turn = TurnServer(tuple(key.turn.urls), secret, key.turn.ttl_s)
    return KeySpec(
        id=key.id,
        app_id=app_id,
        kind=key.kind,
        secret=key.secret,
        channel_patterns=tuple(key.channel_patterns),
        actions=key.effective_actions(),
        allowed_origins=frozenset(key.allowed_origins),
        ice_servers=tuple(
            IceServer(
                server.urls if isinstance(server.urls, str) else tuple(server.urls),
                server.username,
                server.credential,
            )
            for server in key.ice_servers
        ),
        turn=turn,
    )


def _check(config: Config, fail: Callable[[str, str], None]) -> None:
    server, limits = config.server, config.limits
    if not 0 <= server.port <= 65535:
        fail("server.port", "must be between 0 and 65535")
    for name in ("connect_window_s", "keepalive_interval_s", "keepalive_timeout_s"):
        if getattr(server, name) <= 0:
            fail(f"server.{name}", "must be positive")
    for name in ("connect_attempts_per_ip", "slow_consumer_bytes", "shutdown_drain_s"):
        if getattr(server, name) < 0:
            fail(f"server.{name}", "must not be negative")
    for name in ("dedup_window_s", "history_memory_bytes", "dedup_memory_ids"):
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
