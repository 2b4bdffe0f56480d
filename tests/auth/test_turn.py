"""TURN REST credentials and the iceServers a key hands out (sans-I/O, time passed in)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from hubbub.auth.keys import ApiKey, IceServer, KeySpec, TurnServer
from hubbub.auth.turn import ice_servers_for, turn_credentials, with_ice_servers
from hubbub.config import ConfigError, key_ring_of, parse_config


def test_credentials_follow_the_turn_rest_convention() -> None:
    username, credential = turn_credentials("s3cret", "alice", 1_700_000_000)
    assert username == "1700000000:alice"
    expected = hmac.new(b"s3cret", b"1700000000:alice", hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_different_secrets_peers_or_expiries_give_different_credentials() -> None:
    base = turn_credentials("a", "p", 100)[1]
    assert turn_credentials("b", "p", 100)[1] != base
    assert turn_credentials("a", "q", 100)[1] != base
    assert turn_credentials("a", "p", 101)[1] != base


def _key(ice_servers: tuple[IceServer, ...] = (), turn: TurnServer | None = None) -> ApiKey:
    spec = KeySpec(
        id="pk_live_x",
        app_id="a",
        kind="publishable",
        secret=None,
        channel_patterns=("**",),
        actions=frozenset({"publish"}),
        ice_servers=ice_servers,
        turn=turn,
    )
    return ApiKey.from_spec(spec)


def test_a_key_without_ice_configuration_adds_nothing() -> None:
    key = _key()
    assert ice_servers_for(key, "p", 0.0) is None
    assert with_ice_servers(None, key, "p", 0.0) is None
    assert with_ice_servers({"a": 1}, key, "p", 0.0) == {"a": 1}


def test_static_servers_come_first_then_the_turn_entry() -> None:
    key = _key(
        ice_servers=(
            IceServer(urls="stun:stun.example.org"),
            IceServer(urls=("turn:t.example.org",), username="u", credential="c"),
        ),
        turn=TurnServer(urls=("turn:127.0.0.1:3478",), shared_secret="k", ttl_s=600),
    )
    servers = ice_servers_for(key, "bob", 1000.9)
    assert servers is not None
    assert servers[0] == {"urls": "stun:stun.example.org"}
    assert servers[1] == {"urls": ["turn:t.example.org"], "username": "u", "credential": "c"}
    username, credential = turn_credentials("k", "bob", 1600)
    assert servers[2] == {
        "urls": ["turn:127.0.0.1:3478"],
        "username": username,
        "credential": credential,
    }


def test_credentials_outlive_a_longer_token() -> None:
    key = _key(turn=TurnServer(urls=("turn:h",), shared_secret="k", ttl_s=60))
    servers = ice_servers_for(key, "p", 1000.0, valid_until=5000)
    assert servers is not None and servers[0]["username"] == "5000:p"
    servers = ice_servers_for(key, "p", 1000.0, valid_until=1010)
    assert servers is not None and servers[0]["username"] == "1060:p"


def test_metadata_with_its_own_ice_servers_wins() -> None:
    key = _key(ice_servers=(IceServer(urls="stun:s"),))
    own = {"iceServers": [], "x": 1}
    assert with_ice_servers(own, key, "p", 0.0) is own
    assert with_ice_servers({"x": 1}, key, "p", 0.0) == {
        "x": 1,
        "iceServers": [{"urls": "stun:s"}],
    }


CONFIG_HEAD = """
[[apps]]
id = "a"
[[apps.keys]]
id = "pk_live_a"
kind = "publishable"
"""


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('ice_servers = [{ urls = "http://x" }]', "apps[0].keys[0].ice_servers[0].urls[0]"),
        ("ice_servers = [{ urls = [] }]", "apps[0].keys[0].ice_servers[0].urls"),
        (
            f'ice_servers = [{{ urls = "stun:{"x" * 600}" }}]',
            "apps[0].keys[0].ice_servers[0].urls[0]",
        ),
        (
            f'ice_servers = [{{ urls = "turn:x", username = "{"u" * 1025}" }}]',
            "apps[0].keys[0].ice_servers[0].username",
        ),
        (
            "ice_servers = [" + ", ".join(['{ urls = "stun:x" }'] * 17) + "]",
            "apps[0].keys[0].ice_servers",
        ),
        ('turn = { urls = ["turn:x"], shared_secret = "" }', "apps[0].keys[0].turn.shared_secret"),
        (
            'turn = { urls = ["turn:x"], shared_secret = "s", ttl_s = 0 }',
            "apps[0].keys[0].turn.ttl_s",
        ),
        ('turn = { urls = ["https://x"], shared_secret = "s" }', "apps[0].keys[0].turn.urls[0]"),
    ],
)
def test_ice_configuration_outside_the_sdks_rules_is_a_config_error(extra: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG_HEAD + extra + "\n")
    assert caught.value.field == field


def test_ice_configuration_within_the_rules_loads() -> None:
    config = parse_config(
        CONFIG_HEAD
        + 'ice_servers = [{ urls = "STUN:x" }, { urls = ["turns:y"], credential = "c" }]\n'
        + 'turn = { urls = ["turn:z?transport=udp"], shared_secret = "s" }\n'
    )
    key = config.apps[0].keys[0]
    assert key.turn is not None and key.turn.ttl_s == 86400
    translated = key_ring_of(config).get("pk_live_a")
    assert translated is not None and translated.turn is not None
    assert translated.turn == TurnServer(("turn:z?transport=udp",), "s", 86400)
    assert translated.ice_servers == (
        IceServer("STUN:x"),
        IceServer(("turns:y",), credential="c"),
    )
