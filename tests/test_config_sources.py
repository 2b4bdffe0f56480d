"""Configuration from the environment (``HUBBUB_<TABLE>_<FIELD>``), secrets out of files
(``*_env`` / ``*_file``), and every problem of a broken file reported at once."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest

from hubbub.config import Config, ConfigError, load_config, parse_config
from hubbub.config_sources import env_settings

APP = """
[[apps]]
id = "a"
"""

SECRET_KEY = """
[[apps.keys]]
id = "sk"
kind = "secret"
"""


def problems(text: str, environ: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "h.toml", environ=environ)
    return [(p.source, p.field, p.problem) for p in caught.value.problems]


def _value_at(config: Config, path: tuple[str, ...]) -> Any:
    value: Any = config
    for part in path:
        value = getattr(value, part)
    return value


# --- environment overrides -----------------------------------------------------------------


def test_every_table_has_its_variables() -> None:
    names = {setting.variable for setting in env_settings(Config)}
    assert {
        "HUBBUB_SERVER_PORT",
        "HUBBUB_SERVER_TRUSTED_PROXIES",
        "HUBBUB_LIMITS_RATE_PER_SECOND",
        "HUBBUB_BROKER_URL",
        "HUBBUB_BROKER_KIND",
        "HUBBUB_API_REQUEST_BURST_PER_IP",
        "HUBBUB_CONVERSATIONS_DATABASE_URL",
        "HUBBUB_CONVERSATIONS_LLM_MODEL",
        "HUBBUB_CONVERSATIONS_LLM_API_KEY",
        "HUBBUB_WEBRTC_STUN_URL",
    } <= names
    # arrays of tables are out of reach of the environment
    assert not any(name.startswith("HUBBUB_APPS") for name in names)


# Every scalar field of every table, set to a valid value from the environment, is applied:
# the variables are derived from the structs, so this covers fields added later too.
SPECIAL_EXAMPLES: dict[str, tuple[str, Any]] = {
    "HUBBUB_BROKER_URL": ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
    "HUBBUB_BROKER_NODE_ID": ("node-7", "node-7"),
    "HUBBUB_BROKER_KEY_PREFIX": ("tenant-7", "tenant-7"),
    "HUBBUB_CONVERSATIONS_LLM_BASE_URL": ("http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1"),
    "HUBBUB_CONVERSATIONS_PYTHON_TOOLS": ('["pkg.mod:fn"]', ["pkg.mod:fn"]),
    # The bus's app must exist and have a secret key (the demo app below does).
    "HUBBUB_CONVERSATIONS_EVENTS_APP": ("demo", "demo"),
    "HUBBUB_CONVERSATIONS_EVENTS_PROJECTS": ('["support-desk"]', ["support-desk"]),
    "HUBBUB_SERVER_TRUSTED_PROXIES": ('["127.0.0.1", "10.0.0.0/8"]', ["127.0.0.1", "10.0.0.0/8"]),
}


def _example(variable: str, annotation: Any) -> tuple[str, Any]:
    """A valid value for the field, as the variable's text and as the expected value."""
    if variable in SPECIAL_EXAMPLES:
        return SPECIAL_EXAMPLES[variable]
    if typing.get_origin(annotation) is typing.Literal:
        value = typing.get_args(annotation)[-1]
        return str(value), value
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = args[0]
    if kind is bool:
        return "true", True
    if kind is int:
        return "7", 7
    if kind is float:
        return "7.5", 7.5
    if kind is str:
        return "example-value", "example-value"
    if typing.get_origin(kind) is list:
        return '["example"]', ["example"]
    raise AssertionError(f"no example for {variable}: {annotation}")


# Fields that name a variable or a file (api_key_env, api_key_file) are covered by the
# secrets tests below.
PLAIN_SETTINGS = [s for s in env_settings(Config) if not s.path[-1].endswith(("_env", "_file"))]


@pytest.mark.parametrize("setting", PLAIN_SETTINGS, ids=lambda s: s.variable)
def test_each_scalar_field_is_overridable(setting: Any) -> None:
    text, expected = _example(setting.variable, setting.annotation)
    environ = {setting.variable: text}
    if setting.path[:-1] == ("conversations", "llm"):
        environ.setdefault("HUBBUB_CONVERSATIONS_LLM_BASE_URL", "http://127.0.0.1:1/v1")
        environ.setdefault("HUBBUB_CONVERSATIONS_LLM_MODEL", "m")
    if setting.variable.startswith("HUBBUB_API_"):
        text, expected = "7", 7  # a rate and its burst must both be 0 or both set
        environ[setting.variable] = text
    # The demo helpers sign tokens with the demo app's secret key: it must exist.
    needs_demo_app = setting.path[0] == "demo" or setting.path[-1] == "events_app"
    file_text = DEMO_APP_WITH_SECRET if needs_demo_app else ""
    config = parse_config(file_text, "h.toml", environ=environ)
    assert _value_at(config, setting.path) == expected


DEMO_APP_WITH_SECRET = """
[[apps]]
id = "demo"
[[apps.keys]]
id = "sk_id_x"
kind = "secret"
secret = "sk_secret_x"
"""


def test_values_are_typed_like_the_file() -> None:
    config = parse_config(
        "",
        environ={
            "HUBBUB_SERVER_PORT": "9000",
            "HUBBUB_LIMITS_RATE_PER_SECOND": "50",
            "HUBBUB_BROKER_CLUSTER": "true",
            "HUBBUB_BROKER_URL": '["redis://a:6379", "redis://b:6379"]',
            "HUBBUB_BROKER_KEY_PREFIX": "123",  # a string field keeps digits as text
            "HUBBUB_WEBRTC_STUN_URL": "",
        },
    )
    assert config.server.port == 9000
    assert config.limits.rate_per_second == 50.0
    assert config.broker.cluster is True
    assert config.broker.url == ["redis://a:6379", "redis://b:6379"]
    assert config.broker.key_prefix == "123"
    assert config.webrtc.stun_url == ""


def test_the_environment_overrides_the_file() -> None:
    text = '[server]\nport = 8081\nhost = "127.0.0.3"\n[broker]\nkey_prefix = "file"\n'
    config = parse_config(text, environ={"HUBBUB_SERVER_PORT": "9000"})
    assert (config.server.port, config.server.host) == (9000, "127.0.0.3")
    assert config.broker.key_prefix == "file"
    assert parse_config(text).server.port == 8081  # no environment given: the file alone


def test_an_override_can_create_a_nested_table() -> None:
    config = parse_config(
        "",
        environ={
            "HUBBUB_CONVERSATIONS_LLM_BASE_URL": "http://127.0.0.1:11434/v1",
            "HUBBUB_CONVERSATIONS_LLM_MODEL": "llama3.1",
        },
    )
    assert config.conversations.llm is not None
    assert config.conversations.llm.model == "llama3.1"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HUBBUB_SERVER_PORT", "nine", "Expected `int`, got `str`"),
        ("HUBBUB_SERVER_PORT", "70000", "between 0 and 65535"),
        ("HUBBUB_LIMITS_RATE_PER_SECOND", "-5", "must not be negative"),
        ("HUBBUB_BROKER_URL", "http://x", "redis://"),
        ("HUBBUB_BROKER_KIND", "etcd", "Invalid enum value 'etcd'"),
        ("HUBBUB_SERVER_TRUSTED_PROXIES", "[1]", "Expected `str`, got `int`"),
        ("HUBBUB_BROKER_CLUSTER", "yes", "Expected `bool`, got `str`"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, problem: str) -> None:
    found = problems("", {variable: value})
    assert len(found) == 1, found
    source, field, text = found[0]
    assert (source, field) == ("<environment>", variable)
    assert problem in text


def test_unknown_variables_of_our_tables_are_refused_with_a_suggestion() -> None:
    found = problems(
        "",
        {
            "HUBBUB_SERVER_PROT": "1",
            "HUBBUB_APPS_ID": "x",
            "HUBBUB_SOMETHING_ELSE": "not ours",  # no such table: left alone
            "PATH": "/usr/bin",
        },
    )
    assert found == [
        ("<environment>", "HUBBUB_APPS_ID", "[[apps]] is an array of tables: set it in the file"),
        (
            "<environment>",
            "HUBBUB_SERVER_PROT",
            "no such setting (did you mean `HUBBUB_SERVER_PORT`?)",
        ),
    ]


# --- secrets out of files --------------------------------------------------------------------


def test_a_key_secret_from_the_environment() -> None:
    config = parse_config(
        APP + SECRET_KEY + 'secret_env = "SK_SECRET"\n', environ={"SK_SECRET": "s3cr3t"}
    )
    assert config.apps[0].keys[0].secret == "s3cr3t"


def test_a_key_secret_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "sk").write_text("from-a-file\n", encoding="utf-8")
    path = tmp_path / "hubbub.toml"
    path.write_text(APP + SECRET_KEY + 'secret_file = "secrets/sk"\n', encoding="utf-8")
    assert load_config(path).apps[0].keys[0].secret == "from-a-file"


def test_turn_and_llm_secrets_from_files_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "turn").write_text("turn-secret", encoding="utf-8")
    (tmp_path / "llm").write_text("sk-llm\n", encoding="utf-8")
    path = tmp_path / "hubbub.toml"
    path.write_text(
        APP
        + SECRET_KEY
        + 'secret_env = "SK"\n'
        + 'turn = { urls = ["turn:t.example.org:3478"], shared_secret_file = "turn" }\n'
        + '[conversations.llm]\nbase_url = "http://x/v1"\nmodel = "m"\napi_key_file = "llm"\n',
        encoding="utf-8",
    )
    config = load_config(path, {"SK": "k"})
    turn = config.apps[0].keys[0].turn
    assert turn is not None and turn.shared_secret == "turn-secret"
    assert config.conversations.llm is not None and config.conversations.llm.api_key == "sk-llm"


def test_webhook_secrets_from_the_environment_and_files(tmp_path: Path) -> None:
    (tmp_path / "whsec").write_text("from-a-file\n", encoding="utf-8")
    path = tmp_path / "hubbub.toml"
    path.write_text(
        APP
        + SECRET_KEY
        + 'secret = "k"\n'
        + '[[apps.webhooks]]\nurl = "http://127.0.0.1:9/hooks"\nsecret_env = "WHSEC"\n'
        + '[[conversations.webhooks]]\nurl = "http://127.0.0.1:9/c"\nsecret_file = "whsec"\n',
        encoding="utf-8",
    )
    config = load_config(path, {"WHSEC": "from-the-env"})
    assert config.apps[0].webhooks[0].secret == "from-the-env"
    assert config.conversations.webhooks[0].secret == "from-a-file"
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert [(p.field, p.problem) for p in caught.value.problems] == [
        ("apps[0].webhooks[0].secret_env", "environment variable WHSEC is not set")
    ]


def test_secret_problems_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("", encoding="utf-8")
    text = (
        APP
        + SECRET_KEY
        + 'secret_env = "UNSET_VARIABLE"\n'
        + '[[apps.keys]]\nid = "sk2"\nkind = "secret"\nsecret = "x"\nsecret_file = "f"\n'
        + '[[apps.keys]]\nid = "sk3"\nkind = "secret"\nsecret_file = "missing"\n'
        + '[[apps.keys]]\nid = "sk4"\nkind = "secret"\nsecret_file = "empty"\n'
        + '[[apps.keys]]\nid = "pk"\nkind = "publishable"\nsecret_env = "PK"\n'
    )
    path = tmp_path / "h.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"PK": "p"})
    found = [(p.field, p.problem) for p in caught.value.problems]
    assert found == [
        ("apps[0].keys[0].secret_env", "environment variable UNSET_VARIABLE is not set"),
        ("apps[0].keys[1].secret_file", "give only one of secret, secret_file"),
        (
            "apps[0].keys[2].secret_file",
            f"cannot read {tmp_path / 'missing'}: No such file or directory",
        ),
        ("apps[0].keys[3].secret_file", f"{tmp_path / 'empty'} is empty"),
        ("apps[0].keys[4].secret", "a publishable key has no secret"),
    ]
    assert "x" not in str(caught.value).split(": ")[-1]  # no secret value in the messages


# --- every problem of a broken file ---------------------------------------------------------


BROKEN = """
[server]
prot = 8080
host = 5
keepalive_interval_s = 0

[limits]
rate_per_second = -1

[sever]
port = 1

[[apps]]
id = "a"
max_concurent_connections = 5

[[apps.keys]]
id = "a:b"
kind = "secret"

[[apps.keys]]
kind = "publishable"
"""


def test_every_problem_of_a_broken_file_is_reported() -> None:
    assert problems(BROKEN) == [
        ("h.toml", "server", "Object contains unknown field `prot` (did you mean `port`?)"),
        ("h.toml", "server.host", "Expected `str`, got `int`"),
        ("h.toml", "(document)", "Object contains unknown field `sever` (did you mean `server`?)"),
        (
            "h.toml",
            "apps[0]",
            "Object contains unknown field `max_concurent_connections` "
            "(did you mean `max_concurrent_connections`?)",
        ),
        ("h.toml", "apps[0].keys[1]", "Object missing required field `id`"),
        # the rest of the file is still checked for meaning
        ("h.toml", "server.keepalive_interval_s", "must be positive"),
        ("h.toml", "limits.rate_per_second", "must not be negative (0 disables the limit)"),
    ]


def test_checks_of_meaning_are_all_reported_once_the_shape_is_right() -> None:
    text = (
        "[server]\nkeepalive_interval_s = 0\nport = 70000\n[limits]\nrate_per_second = -1\n"
        + APP
        + SECRET_KEY
        + '[[apps.keys]]\nid = "sk"\nkind = "publishable"\n'
    )
    assert [field for _, field, _ in problems(text)] == [
        "server.port",
        "server.keepalive_interval_s",
        "limits.rate_per_second",
        "apps[0].keys[0].secret",
        "apps[0].keys[1].id",
    ]
