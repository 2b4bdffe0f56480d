"""Webhook and proxy configuration: the spec's shapes, defaults, and a ConfigError per mistake."""

from __future__ import annotations

import pytest

from hubbub.config import ConfigError, parse_config

APP = """
[[apps]]
id = "a"

[[apps.keys]]
id = "pk_a"
kind = "publishable"
"""


def test_the_spec_example_and_its_defaults() -> None:
    config = parse_config(
        APP
        + """
connect_proxy = "http://127.0.0.1:9000/connect"
subscribe_proxy = "http://127.0.0.1:9000/subscribe"
publish_proxy = "http://127.0.0.1:9000/publish"

[[apps.webhooks]]
url = "http://127.0.0.1:9000/hooks"
secret = "whsec_x"
events = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"]
channel_patterns = ["**"]

[[conversations.webhooks]]
url = "https://backend.example/conversations"
secret = "whsec_y"
"""
    )
    (hook,) = config.apps[0].webhooks
    assert (hook.batch_max_events, hook.batch_max_delay_ms) == (100, 100)
    assert (hook.retry_window_s, hook.queue_max_events) == (300, 10_000)
    key = config.apps[0].keys[0]
    assert key.proxy_timeout_ms == 1000
    assert key.connect_proxy_headers == ["cookie", "authorization", "origin", "user-agent"]
    (conversation_hook,) = config.conversations.webhooks
    assert conversation_hook.events == [
        "conversation_started",
        "conversation_ended",
        "tool_called",
    ]
    assert conversation_hook.project_ids == []


HOOK = '\n[[apps.webhooks]]\nurl = "http://127.0.0.1:9/h"\nsecret = "s"\n'


@pytest.mark.parametrize(
    ("extra", "field", "problem"),
    [
        (
            '\n[[apps.webhooks]]\nurl = "ftp://x/h"\nsecret = "s"\n',
            "apps[0].webhooks[0].url",
            "http",
        ),
        (
            '\n[[apps.webhooks]]\nurl = "http:///h"\nsecret = "s"\n',
            "apps[0].webhooks[0].url",
            "http",
        ),
        (
            '\n[[apps.webhooks]]\nurl = "http://x/h"\nsecret = ""\n',
            "apps[0].webhooks[0].secret",
            "empty",
        ),
        (
            '\n[[apps.webhooks]]\nurl = "http://x/h"\n',
            "apps[0].webhooks[0].secret",
            "must not be empty",
        ),
        (HOOK + 'events = ["member_joined"]\n', "apps[0].webhooks[0].events[0]", "unknown"),
        (HOOK + "events = []\n", "apps[0].webhooks[0].events", "at least one"),
        (HOOK + 'channel_patterns = ["a\\\\"]\n', "apps[0].webhooks[0].channel_patterns[0]", ""),
        (HOOK + "batch_max_events = 101\n", "apps[0].webhooks[0].batch_max_events", "100"),
        (HOOK + "batch_max_delay_ms = 250\n", "apps[0].webhooks[0].batch_max_delay_ms", "100"),
        (HOOK + "retry_window_s = 0\n", "apps[0].webhooks[0].retry_window_s", "positive"),
        (HOOK + "retry_max_ms = 10\n", "apps[0].webhooks[0].retry_max_ms", "retry_initial_ms"),
        (HOOK + "queue_max_events = 50\n", "apps[0].webhooks[0].queue_max_events", "batch"),
        (HOOK + "queue_max_bytes = 1000\n", "apps[0].webhooks[0].queue_max_bytes", "65536"),
        (HOOK + 'name = "has space"\n', "apps[0].webhooks[0].name", "characters"),
        (HOOK + 'name = "x"\n' + HOOK + 'name = "x"\n', "apps[0].webhooks[1].name", "another"),
        (HOOK + "surprise = 1\n", "apps[0].webhooks[0]", "surprise"),
        ('connect_proxy = "nope"\n', "apps[0].keys[0].connect_proxy", "http"),
        (
            'publish_proxy = "http://x/p"\nproxy_timeout_ms = 0\n',
            "apps[0].keys[0].proxy_timeout_ms",
            "positive",
        ),
        (
            'connect_proxy_headers = ["Cookie"]\n',
            "apps[0].keys[0].connect_proxy_headers[0]",
            "lower-case",
        ),
        ('connect_proxy_headers = ["a b"]\n', "apps[0].keys[0].connect_proxy_headers[0]", "header"),
    ],
)
def test_bad_hook_config_names_the_field(extra: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as failed:
        parse_config(APP + extra, "hooks.toml")
    assert failed.value.field == field
    assert problem in failed.value.problem


def test_a_connect_proxy_belongs_to_a_publishable_key() -> None:
    text = """
[[apps]]
id = "a"

[[apps.keys]]
id = "sk_a"
kind = "secret"
secret = "s"
connect_proxy = "http://127.0.0.1:9/connect"
"""
    with pytest.raises(ConfigError) as failed:
        parse_config(text, "hooks.toml")
    assert failed.value.field == "apps[0].keys[0].connect_proxy"


def test_bad_conversation_hook_config_names_the_field() -> None:
    text = (
        '[[conversations.webhooks]]\nurl = "http://x/h"\nsecret = "s"\nevents = ["member_added"]\n'
    )
    with pytest.raises(ConfigError) as failed:
        parse_config(text, "hooks.toml")
    assert failed.value.field == "conversations.webhooks[0].events[0]"
