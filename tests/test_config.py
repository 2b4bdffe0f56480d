"""Configuration: the demo config, and a precise ConfigError for each kind of bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubbub import cli
from hubbub.config import (
    DEMO_CONFIG_TOML,
    PUBLIC_DEMO_SECRET_KEY,
    ConfigError,
    demo_config,
    load_config,
    parse_config,
)


def test_demo_config_is_the_documented_one() -> None:
    config = demo_config()
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    limits = config.limits
    assert (limits.rate_per_second, limits.rate_burst) == (100, 200)
    assert (limits.max_message_bytes, limits.max_channels) == (65536, 100)
    assert [app.id for app in config.apps] == ["demo"]
    pk, sk = config.apps[0].keys
    assert (pk.id, pk.kind, pk.channel_patterns, pk.allowed_origins) == (
        "pk_live_demo",
        "publishable",
        ["**"],
        [],
    )
    assert pk.effective_actions() == {"publish", "subscribe", "presence", "send"}
    assert (sk.id, sk.kind, sk.secret) == ("sk_id_demo", "secret", "sk_secret_demo")
    assert sk.effective_actions() == {"publish", "subscribe", "presence", "send"}
    # The demo pages' helpers are on, and the demo app reads the demo project's conversations.
    assert (config.demo.enabled, config.demo.app) == (True, "demo")
    assert config.apps[0].conversation_projects == ["support-desk"]
    assert (sk.id, sk.secret) == PUBLIC_DEMO_SECRET_KEY
    # The conversation bus is on, into the demo app, for every project.
    assert config.conversations.events_app == "demo"
    assert config.conversations.events_projects == ["*"]


def test_defaults_for_an_empty_file() -> None:
    config = parse_config("", "empty.toml")
    assert config.apps == []
    assert config.server.connect_attempts_per_ip == 60
    assert config.server.keepalive_interval_s == 30
    assert config.server.keepalive_timeout_s == 10
    assert config.server.shutdown_drain_s == 1


def test_default_key_actions_depend_on_the_kind() -> None:
    config = parse_config(
        """
        [[apps]]
        id = "a"
        [[apps.keys]]
        id = "pk"
        kind = "publishable"
        [[apps.keys]]
        id = "sk"
        kind = "secret"
        secret = "s"
        """
    )
    pk, sk = config.apps[0].keys
    assert pk.effective_actions() == {"publish", "subscribe", "presence"}
    assert sk.effective_actions() == {"publish", "subscribe", "presence", "send"}
    assert pk.channel_patterns == ["**"]


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text(DEMO_CONFIG_TOML, encoding="utf-8")
    loaded, demo = load_config(path), demo_config()
    # Demo mode adds the bundled conversation projects on top of the realtime contract.
    assert (loaded.server, loaded.limits, loaded.apps) == (demo.server, demo.limits, demo.apps)


APP = '[[apps]]\nid = "a"\n'
KEY = '[[apps.keys]]\nid = "pk"\nkind = "publishable"\n'

BAD_FILES = [
    ("[server\nport = 1", "(document)", "not valid TOML"),
    ("[server]\nport = 'x'", "server.port", "Expected `int`, got `str`"),
    ("[server]\nport = 70000", "server.port", "between 0 and 65535"),
    ("[server]\nprot = 8080", "server", "unknown field `prot`"),
    ("[sever]\nport = 8080", "(document)", "unknown field `sever`"),
    ("[server]\nkeepalive_interval_s = 0", "server.keepalive_interval_s", "must be positive"),
    ("[server]\nconnect_window_s = -1", "server.connect_window_s", "must be positive"),
    ("[server]\nslow_consumer_bytes = -1", "server.slow_consumer_bytes", "must not be negative"),
    ("[server]\ntrusted_proxies = 'x'", "server.trusted_proxies", "Expected `array`"),
    ("[limits]\nmax_channels = -1", "limits.max_channels", "must not be negative"),
    ("[limits]\nrate_per_second = 0", "limits.rate_burst", "both be 0 or both set"),
    ("[limits]\nrate_burst = 1.5", "limits.rate_burst", "Expected `int`, got `float`"),
    ("apps = 1", "apps", "Expected `array`"),
    ('[[apps]]\nid = ""', "apps[0].id", "must not be empty"),
    ("[[apps]]\nid = 'a'\nname = 'x'", "apps[0]", "unknown field `name`"),
    ("[[apps]]\nkeys = []", "apps[0]", "missing required field `id`"),
    (APP + APP, "apps[1].id", "duplicate app id 'a'"),
    (APP + '[[apps.keys]]\nid = "pk"\n', "apps[0].keys[0]", "missing required field `kind`"),
    (APP + '[[apps.keys]]\nid = "pk"\nkind = "public"', "apps[0].keys[0].kind", "Invalid enum"),
    (APP + KEY + KEY, "apps[0].keys[1].id", "duplicate key id 'pk'"),
    (APP + KEY + '[[apps]]\nid = "b"\n' + KEY, "apps[1].keys[0].id", "duplicate key id"),
    (APP + '[[apps.keys]]\nid = "a:b"\nkind = "publishable"', "apps[0].keys[0].id", "without ':'"),
    (APP + '[[apps.keys]]\nid = "é"\nkind = "publishable"', "apps[0].keys[0].id", "printable"),
    (APP + '[[apps.keys]]\nid = "sk"\nkind = "secret"', "apps[0].keys[0].secret", "non-empty"),
    (
        APP + '[[apps.keys]]\nid = "pk"\nkind = "publishable"\nsecret = "s"',
        "apps[0].keys[0].secret",
        "a publishable key has no secret",
    ),
    (
        APP + KEY + 'channel_patterns = ["ok", "bad\\\\"]',
        "apps[0].keys[0].channel_patterns[1]",
        "lone backslash",
    ),
    (
        APP + KEY + 'actions = ["publish", "shout"]',
        "apps[0].keys[0].actions[1]",
        "unknown action 'shout'",
    ),
    (APP + KEY + "actions = 'publish'", "apps[0].keys[0].actions", "Expected `array | null`"),
    (APP + KEY + "allowed_origins = [1]", "apps[0].keys[0].allowed_origins[0]", "Expected `str`"),
    (APP + 'conversation_projects = ["desk", " "]', "apps[0].conversation_projects[1]", '"*"'),
    (APP + "conversation_projects = 'desk'", "apps[0].conversation_projects", "Expected `array`"),
    ("[demo]\nenabled = true", "demo.app", "no app 'demo'"),
    ("[demo]\nenabled = true\napp = 'a'\n" + APP + KEY, "demo.app", "has no secret key"),
    ("[demo]\nenable = true", "demo", "unknown field `enable`"),
    ("[conversations]\nevents_app = 'nope'", "conversations.events_app", "no app 'nope'"),
    (
        "[conversations]\nevents_app = 'a'\n" + APP + KEY,
        "conversations.events_app",
        "has no secret key to steer conversations with",
    ),
    (
        "[conversations]\nevents_projects = ['']",
        "conversations.events_projects[0]",
        "must be a project id",
    ),
    ("[conversations]\nevents_app = 5", "conversations.events_app", "Expected `str`"),
]


@pytest.mark.parametrize(("text", "field", "problem"), BAD_FILES)
def test_bad_config_names_file_field_and_problem(text: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bad.toml")
    error = caught.value
    assert error.source == "bad.toml"
    assert error.field == field
    assert problem in error.problem
    assert str(error) == f"bad.toml: {field}: {error.problem}"


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert (caught.value.source, caught.value.field) == (str(missing), "(file)")
    assert "cannot read" in caught.value.problem
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[[apps]]\nid = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(latin1)
    assert (caught.value.field, caught.value.problem) == ("(file)", "not UTF-8 text")


def test_serve_with_a_bad_config_exits_2_and_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(APP + KEY + 'actions = ["publish", "shout"]\n', encoding="utf-8")
    assert cli.main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "apps[0].keys[0].actions[1]" in err
    assert "unknown action 'shout'" in err


def test_serve_with_a_missing_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: (file): cannot read" in capsys.readouterr().err


CHANNELS_APP = """
[[apps]]
id = "a"
{channels}
"""


def _channels(*entries: str) -> str:
    return CHANNELS_APP.format(channels="".join(f"\n[[apps.channels]]\n{e}\n" for e in entries))


def test_channel_history_entries_and_server_defaults() -> None:
    config = parse_config(
        _channels(
            'pattern = "chat/quiet/*"\nhistory_size = 0',
            'pattern = "chat/**"\nhistory_size = 100\nhistory_ttl_s = 60',
        )
    )
    quiet, chat = config.apps[0].channels
    assert (quiet.pattern, quiet.history_size) == ("chat/quiet/*", 0)
    assert (chat.history_size, chat.history_ttl_s) == (100, 60)
    assert parse_config("").server.dedup_window_s == 120
    assert parse_config(_channels('pattern = "x"')).apps[0].channels[0].history_ttl_s == 600


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (_channels('pattern = "a/\\\\"'), "apps[0].channels[0].pattern", "backslash"),
        (_channels('pattern = "a"\nhistory_size = -1'), "apps[0].channels[0].history_size", "0 to"),
        (
            _channels('pattern = "a"\nhistory_size = 10001'),
            "apps[0].channels[0].history_size",
            "10000",
        ),
        (
            _channels('pattern = "a"\nhistory_ttl_s = 0'),
            "apps[0].channels[0].history_ttl_s",
            "positive",
        ),
        (
            _channels(
                'pattern = "chat/**"\nhistory_size = 5', 'pattern = "chat/*"\nhistory_size = 9'
            ),
            "apps[0].channels[1].pattern",
            "never used",
        ),
        (_channels("history_size = 5"), "apps[0].channels[0]", "pattern"),
        ("[server]\ndedup_window_s = 0", "server.dedup_window_s", "positive"),
        ("[server]\nhistory_memory_bytes = 0", "server.history_memory_bytes", "positive"),
    ],
)
def test_bad_channel_history_config(text: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.field.startswith(field), caught.value
    assert problem in caught.value.problem, caught.value


def test_listen_backlog_and_shutdown_reconnect_rate() -> None:
    defaults = parse_config("").server
    assert (defaults.backlog, defaults.shutdown_reconnects_per_s) == (1024, 1000)
    server = parse_config("[server]\nbacklog = 8192\nshutdown_reconnects_per_s = 0").server
    assert (server.backlog, server.shutdown_reconnects_per_s) == (8192, 0)
    for text, field, problem in [
        ("[server]\nbacklog = 0", "server.backlog", "positive"),
        (
            "[server]\nshutdown_reconnects_per_s = -1",
            "server.shutdown_reconnects_per_s",
            "negative",
        ),
        ("[server]\nbacklog = 'big'", "server.backlog", "Expected `int`"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(text)
        assert (caught.value.field, problem in caught.value.problem) == (field, True)


def test_the_redis_pool_size() -> None:
    assert parse_config("").broker.max_connections == 64
    assert parse_config("[broker]\nmax_connections = 8").broker.max_connections == 8
    with pytest.raises(ConfigError) as caught:
        parse_config("[broker]\nmax_connections = 0")
    assert (caught.value.field, "positive" in caught.value.problem) == (
        "broker.max_connections",
        True,
    )
