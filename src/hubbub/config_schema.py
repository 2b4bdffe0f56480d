"""The configuration file's schema: its sections, their fields and defaults, and its errors.

The shape of the file is a contract other tools rely on. Defaults that a running part also
needs are read from that part's settings dataclass (``NodeLimits``, ``RestSettings``,
``PeerLimits``, ``WebRtcSettings``), the one place each is written. Checks of meaning live in
:mod:`hubbub.config_checks`; loading in :mod:`hubbub.config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from hubbub.api.rest import RestSettings
from hubbub.config_hooks import (
    DEFAULT_CONNECT_PROXY_HEADERS,
    ConversationWebhookConfig,
    WebhookConfig,
)
from hubbub.core.limits import NodeLimits
from hubbub.errors import HubbubError
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
    # On shutdown, going_away's retryAfterMs is spread over a window long enough that the
    # dropped clients come back at about this many connects per second (0: a fixed 1 s window).
    shutdown_reconnects_per_s: float = 1000.0
    # Pending TCP connections the kernel queues for the listening socket (a reconnect storm
    # overflows a small one: SYNs are dropped and retried after 1 s, 3 s, ...).
    backlog: int = 1024
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
    # Pings have their own bucket (0 burst disables it).
    ping_rate_per_second: float = _default(NodeLimits, "ping_rate_per_second")
    ping_burst: int = _default(NodeLimits, "ping_burst")
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
    # Pooled connections per Redis server (per cluster primary); a command waits for a free
    # one (up to its timeout) rather than opening more during a burst of connects.
    max_connections: int = 64


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
    # Abuse bounds (conversation protocol section 9): a per-connection message rate (token
    # bucket; each started 64 KiB of a message costs one more token), the longest text input,
    # the time a client has to authenticate, and /ws upgrades + WebRTC offers per client IP.
    rate_per_second: float = 100.0  # 0 disables the rate limit
    rate_burst: int = 200
    max_text_input_chars: int = 10_000  # 0: unlimited
    max_variables_bytes: int = 1_048_576  # a stage's variables as JSON (set_var); 0: unlimited
    auth_timeout_s: float = 10.0  # 0: no deadline
    connect_attempts_per_ip: int = 60  # per connect_window_s; 0 disables
    connect_window_s: float = 60.0
    # Serve the demo order-status API (GET /demo/api/orders/{id}) the support-desk demo uses.
    demo_api: bool = False
    llm: ConversationLlmConfig | None = None
    webhooks: list[ConversationWebhookConfig] = []  # conversation events, signed like apps'
    # The conversation bus: every push of a conversation is also published on the channel
    # conversations/{projectId}/{conversationId} of this app, whose secret keys may steer the
    # conversation over REST ("" is off). Only the projects in events_projects ("*": all).
    events_app: str = ""
    events_projects: list[str] = msgspec.field(default_factory=lambda: ["*"])


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
