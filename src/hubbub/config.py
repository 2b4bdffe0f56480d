"""TOML configuration: the file's shape is a contract other tools rely on.

Loading validates everything up front and reports **every** problem of the file as a
:class:`ConfigError` whose lines each name the file, the field (a dotted path such as
``apps[0].keys[1].actions``) and the problem, so ``hubbub serve`` can stop with exit code 2
before it binds a port. The environment can override fields and hold secrets
(:mod:`hubbub.config_sources`); problems with those name the variable.

A check of meaning is one ``fail(field, problem)`` call: checks collect, they do not stop.
The file's schema is :mod:`hubbub.config_schema`, its checks :mod:`hubbub.config_checks`; this
module loads, and translates the keys into auth's own specification (:func:`key_ring_of`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import msgspec

from hubbub.auth.keys import IceServer, KeyRing, KeySpec, TurnServer
from hubbub.config_checks import check_config
from hubbub.config_schema import (
    ApiConfig,
    AppConfig,
    BrokerConfig,
    ChannelConfig,
    Config,
    ConfigError,
    ConfigProblem,
    ConversationLlmConfig,
    ConversationsConfig,
    DemoConfig,
    IceServerConfig,
    KeyConfig,
    LimitsConfig,
    ServerConfig,
    TurnConfig,
    WebRtcConfig,
)
from hubbub.config_shape import UNUSABLE, check_struct
from hubbub.config_sources import ENV_SOURCE, apply_environment, resolve_secrets
from hubbub.console import demo_projects_dir

# The schema's names, importable from here as they always were.
__all__ = [
    "DEMO_CONFIG_TOML",
    "PUBLIC_DEMO_SECRET_KEY",
    "ApiConfig",
    "AppConfig",
    "BrokerConfig",
    "ChannelConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ConversationLlmConfig",
    "ConversationsConfig",
    "DemoConfig",
    "IceServerConfig",
    "KeyConfig",
    "LimitsConfig",
    "ServerConfig",
    "TurnConfig",
    "WebRtcConfig",
    "demo_config",
    "key_ring_of",
    "key_specs",
    "load_config",
    "parse_config",
]

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

# The conversation bus: the demo conversations can be watched on
# conversations/{projectId}/{conversationId} and steered with the demo app's secret key.
[conversations]
events_app = "demo"

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
        check_config(config, fail)
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
