"""authenticate_connect(): a key whose backend says who the connection is (spec 16.4).

The backend here is a stand-in for the proxy's HTTP client (tests/hooks covers that against a
real backend): these tests are about how auth reads the answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from hubbub.auth.connect import (
    CloseRejection,
    ConnectAttempt,
    HttpRejection,
    authenticate_connect,
)
from hubbub.config import key_ring_of, parse_config
from hubbub.core.principal import Principal
from hubbub.protocol.codes import CloseCode

KEYS_TOML = """
[[apps]]
id = "site"

[[apps.keys]]
id = "pk_site"
kind = "publishable"
channel_patterns = ["rooms/**", "lobby"]
actions = ["publish", "subscribe", "presence"]
allowed_origins = ["https://site.example"]
connect_proxy = "http://127.0.0.1:9/connect"
ice_servers = [{ urls = "stun:stun.site.example:3478" }]

[[apps.keys]]
id = "pk_plain"
kind = "publishable"
"""


@dataclass
class Answering:
    answer: dict[str, Any] | HttpRejection
    asked: list[ConnectAttempt] = field(default_factory=list)

    def covers_connect(self, key_id: str) -> bool:
        return key_id == "pk_site"

    async def identify(
        self, key_id: str, attempt: ConnectAttempt
    ) -> dict[str, Any] | HttpRejection:
        self.asked.append(attempt)
        return self.answer


def attempt(
    key: str | None = "pk_site", origin: str | None = None, token: str | None = None
) -> ConnectAttempt:
    return ConnectAttempt(key, token, origin, "127.0.0.1", {"Cookie": "s=1"}, {"key": key or ""})


async def connect(proxy: Answering, **kwargs: Any) -> Principal | HttpRejection | CloseRejection:
    keys = key_ring_of(parse_config(KEYS_TOML))
    return await authenticate_connect(keys, attempt(**kwargs), time.time(), proxy)


async def test_the_backends_claims_narrowed_by_the_key() -> None:
    proxy = Answering(
        {
            "peerId": "u_42",
            "channels": ["rooms/7/*", "admin/**"],
            "permissions": ["publish", "subscribe", "send"],
            "peerMetadata": {"name": "Ann"},
            "metadata": {"plan": "pro"},
        }
    )
    principal = await connect(proxy)
    assert isinstance(principal, Principal)
    assert (principal.app_id, principal.peer_id, principal.key_id) == ("site", "u_42", "pk_site")
    assert principal.expires_at is None  # like any publishable-key connection
    assert principal.actions == frozenset({"publish", "subscribe"})  # "send": not the key's
    assert principal.scope.allows_channel("rooms/7/chat")
    assert not principal.scope.allows_channel("rooms/8/chat")  # the backend narrowed it
    assert not principal.scope.allows_channel("admin/x")  # the key never allowed it
    assert principal.peer_metadata == b'{"name":"Ann"}'
    assert principal.welcome_metadata is not None
    assert b'"plan":"pro"' in principal.welcome_metadata
    assert b"stun:stun.site.example:3478" in principal.welcome_metadata  # the key's ICE servers


async def test_only_a_peer_id_is_required() -> None:
    principal = await connect(Answering({"peerId": "u_1"}))
    assert isinstance(principal, Principal)
    assert principal.actions == frozenset({"publish", "subscribe", "presence"})
    assert principal.scope.allows_channel("lobby")


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"peerId": ""},
        {"peerId": "x" * 129},
        {"peerId": "caf\u00e9"},
        {"peerId": 42},
        {"peerId": "u", "channels": "rooms/1"},
        {"peerId": "u", "channels": ["rooms/\\"]},
        {"peerId": "u", "permissions": "publish"},
        {"peerId": "u", "peerMetadata": ["not", "an", "object"]},
        {"peerId": "u", "peerMetadata": {"big": "x" * 5000}},
        {"peerId": "u", "metadata": {"big": "x" * 9000}},
    ],
)
async def test_claims_hubbub_cannot_use_are_the_backends_fault(claims: dict[str, Any]) -> None:
    assert await connect(Answering(claims)) == HttpRejection(503, "backend_error")


async def test_a_refusal_from_the_backend_passes_through() -> None:
    refused = HttpRejection(401, "unauthorized")
    assert await connect(Answering(refused)) == refused


async def test_origin_is_checked_before_the_backend_is_asked() -> None:
    proxy = Answering({"peerId": "u"})
    assert await connect(proxy, origin="https://evil.example") == HttpRejection(
        401, "origin_not_allowed"
    )
    assert proxy.asked == []
    assert isinstance(await connect(proxy, origin="https://site.example"), Principal)


async def test_keys_without_a_connect_proxy_and_tokens_are_unchanged() -> None:
    proxy = Answering({"peerId": "u"})
    plain = await connect(proxy, key="pk_plain")
    assert isinstance(plain, Principal) and plain.peer_id != "u"
    assert await connect(proxy, key=None, token="x.y.z") == HttpRejection(401, "invalid_token")
    assert await connect(proxy, token="x.y.z") == CloseRejection(
        CloseCode.INVALID_TOKEN, "exactly one of key or token is required"
    )
    assert await connect(proxy, key="pk_nope") == CloseRejection(
        CloseCode.INVALID_TOKEN, "unknown key"
    )
    assert proxy.asked == []
