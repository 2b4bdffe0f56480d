"""The [webrtc] section and the WEBRTC_* environment variables it overrides."""

from __future__ import annotations

import pytest

from hubbub.config import ConfigError, parse_config


def test_defaults_come_from_the_environment_then_the_spec() -> None:
    webrtc = parse_config("").webrtc
    assert webrtc.resolved_stun_url({}) == "stun:stun.l.google.com:19302"
    assert webrtc.resolved_ice_gathering_timeout_ms({}) == 5000
    env = {"WEBRTC_STUN_URL": "", "WEBRTC_ICE_GATHERING_TIMEOUT_MS": "250"}
    assert webrtc.resolved_stun_url(env) == ""  # empty disables STUN
    assert webrtc.resolved_ice_gathering_timeout_ms(env) == 250
    assert webrtc.max_peer_connections == 100


def test_the_config_file_overrides_the_environment() -> None:
    webrtc = parse_config(
        '[webrtc]\nstun_url = "stun:stun.example:3478"\nice_gathering_timeout_ms = 800\n'
        "max_peer_connections = 3\n"
    ).webrtc
    env = {"WEBRTC_STUN_URL": "", "WEBRTC_ICE_GATHERING_TIMEOUT_MS": "250"}
    assert webrtc.resolved_stun_url(env) == "stun:stun.example:3478"
    assert webrtc.resolved_ice_gathering_timeout_ms(env) == 800
    assert webrtc.max_peer_connections == 3


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "nan", ""])
def test_bad_environment_timeout_is_a_config_error(raw: str) -> None:
    webrtc = parse_config("").webrtc
    with pytest.raises(ConfigError) as caught:
        webrtc.resolved_ice_gathering_timeout_ms({"WEBRTC_ICE_GATHERING_TIMEOUT_MS": raw})
    assert caught.value.field == "WEBRTC_ICE_GATHERING_TIMEOUT_MS"
    assert caught.value.problem == "must be positive"


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("ice_gathering_timeout_ms = 0", "webrtc.ice_gathering_timeout_ms"),
        ("max_peer_connections = -1", "webrtc.max_peer_connections"),
        ("max_peer_connections_per_ip = -1", "webrtc.max_peer_connections_per_ip"),
        ("control_open_timeout_s = 0", "webrtc.control_open_timeout_s"),
        ("stun_urls = []", "webrtc"),
    ],
)
def test_bad_section_is_a_config_error(toml: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[webrtc]\n{toml}\n")
    assert caught.value.field == field
