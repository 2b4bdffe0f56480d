"""POST /v1/tokens: minting within the key's bounds (spec 10.1), and the token connects."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import TokenRejected, verify_token
from hubbub.config import key_ring_of, parse_config
from hubbub.core.principal import Principal
from tests.api.conftest import API_TOML, SK, api_client, serve, ws_connect

pytestmark = pytest.mark.integration

KEYS = key_ring_of(parse_config(API_TOML))


def _verified(token: str) -> Principal:
    principal = verify_token(token, KEYS, time.time())
    assert not isinstance(principal, TokenRejected), principal
    return principal


async def test_minted_token_carries_the_request_and_connects() -> None:
    request = {
        "peerId": "u_alice_123",
        "channels": ["room/*"],
        "permissions": ["subscribe", "publish"],
        "expiresInSec": 120,
        "metadata": {"theme": "dark"},
        "peerMetadata": {"username": "Alice"},
    }
    async with serve() as served, api_client(served) as api:
        before = int(time.time())
        reply = await api.call("POST", "/v1/tokens", request)
        assert reply.status == 200, reply.body
        assert set(reply.body) == {"token", "expiresAt"}
        assert before + 120 <= reply.body["expiresAt"] <= int(time.time()) + 120
        principal = _verified(reply.body["token"])
        assert principal.peer_id == "u_alice_123"
        assert principal.actions == frozenset({"subscribe", "publish"})
        assert principal.scope.allows_channel("room/1")
        assert not principal.scope.allows_channel("lobby")
        assert principal.peer_metadata == b'{"username":"Alice"}'

        ws, welcome = await ws_connect(api.session, served, f"token={reply.body['token']}")
        assert welcome["peerId"] == "u_alice_123"
        assert welcome["expiresAt"] == reply.body["expiresAt"]
        assert welcome["metadata"]["theme"] == "dark"
        await ws.close()


async def test_defaults_are_one_hour_and_the_keys_full_scope() -> None:
    async with serve() as served, api_client(served) as api:
        api.auth = "Bearer sk_id_plain:sk_secret_plain_0123456789abcdefghijkl"
        reply = await api.call("POST", "/v1/tokens", {"peerId": "bob"})
        assert reply.status == 200
        assert abs(reply.body["expiresAt"] - (time.time() + 3600)) < 5
        principal = _verified(reply.body["token"])
        assert principal.actions == frozenset({"publish", "subscribe", "presence", "send"})
        assert principal.scope.allows_channel("any/thing")
        # sk_id_plain configures no ICE servers, so the token carries no metadata at all.
        assert principal.welcome_metadata is None


async def test_a_wildcard_channel_inside_the_keys_patterns_is_accepted() -> None:
    async with serve() as served, api_client(served) as api:
        api.auth = "Bearer sk_id_scoped:sk_secret_scoped_0123456789abcdefghijkl"
        reply = await api.call(
            "POST", "/v1/tokens", {"peerId": "c", "channels": ["room/*", "room/a"]}
        )
        assert reply.status == 200, reply.body


def _huge(size: int) -> dict[str, Any]:
    return {"blob": "x" * size}


@pytest.mark.parametrize(
    ("auth", "body", "status", "code"),
    [
        (None, {}, 400, "invalid_request"),
        (None, {"peerId": ""}, 400, "invalid_request"),
        (None, {"peerId": "é"}, 400, "invalid_request"),
        (None, {"peerId": "a\nb"}, 400, "invalid_request"),
        (None, {"peerId": "x" * 129}, 400, "invalid_request"),
        (None, {"peerId": 7}, 400, "invalid_request"),
        (None, {"peerId": "a", "channels": "room"}, 400, "invalid_request"),
        (None, {"peerId": "a", "channels": [f"c{i}" for i in range(101)]}, 400, "invalid_request"),
        (None, {"peerId": "a", "channels": [""]}, 400, "invalid_request"),
        (None, {"peerId": "a", "channels": ["bad\\"]}, 400, "invalid_request"),
        (None, {"peerId": "a", "channels": ["_system/x"]}, 400, "channel_reserved"),
        (None, {"peerId": "a", "permissions": ["fly"]}, 400, "invalid_request"),
        (None, {"peerId": "a", "permissions": ["publish"] * 17}, 400, "invalid_request"),
        (None, {"peerId": "a", "expiresInSec": 0}, 400, "invalid_request"),
        (None, {"peerId": "a", "expiresInSec": 86401}, 400, "invalid_request"),
        (None, {"peerId": "a", "expiresInSec": 60.5}, 400, "invalid_request"),
        (None, {"peerId": "a", "expiresInSec": 1e300}, 400, "invalid_request"),
        (None, {"peerId": "a", "expiresInSec": "60"}, 400, "invalid_request"),
        (None, {"peerId": "a", "expiresInSec": True}, 400, "invalid_request"),
        (None, {"peerId": "a", "metadata": []}, 400, "invalid_request"),
        (None, {"peerId": "a", "metadata": _huge(8200)}, 400, "invalid_request"),
        (None, {"peerId": "a", "peerMetadata": _huge(4100)}, 400, "invalid_request"),
        ("scoped", {"peerId": "a", "channels": ["lobby"]}, 403, "channel_not_authorized"),
        ("scoped", {"peerId": "a", "channels": ["room/**"]}, 403, "channel_not_authorized"),
        ("scoped", {"peerId": "a", "permissions": ["send"]}, 403, "action_not_permitted"),
    ],
)
async def test_bad_requests_get_their_documented_error(
    auth: str | None, body: dict[str, Any], status: int, code: str
) -> None:
    async with serve() as served, api_client(served) as api:
        if auth == "scoped":
            api.auth = "Bearer sk_id_scoped:sk_secret_scoped_0123456789abcdefghijkl"
        reply = await api.call("POST", "/v1/tokens", body)
        assert (reply.status, reply.body["error"]) == (status, code), reply.body
        assert isinstance(reply.body["message"], str) and reply.body["message"]
        # The server is unaffected: the next good request succeeds.
        assert (await api.call("POST", "/v1/tokens", {"peerId": "ok"})).status == 200


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1, 2]", b'"peerId"', b'{"peerId": "a",}', b"\xff\xfe"]
)
async def test_a_body_that_is_not_a_json_object_is_invalid(raw: bytes) -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("POST", "/v1/tokens", raw=raw)
        assert (reply.status, reply.body["error"]) == (400, "invalid_request")


async def test_a_body_over_32_kb_is_refused_with_413() -> None:
    body = {"peerId": "a", "metadata": {"x": "y" * (33 * 1024)}}
    async with serve() as served, api_client(served) as api:
        reply = await api.call("POST", "/v1/tokens", body)
        assert (reply.status, reply.body["error"]) == (413, "invalid_request")
        # Exactly at the limit is still read (and refused later for the metadata size).
        padded = b'{"peerId":"a","pad":"' + b"p" * (32 * 1024 - 23) + b'"}'
        assert len(padded) == 32 * 1024
        reply = await api.call("POST", "/v1/tokens", raw=padded)
        assert reply.status == 200


async def test_a_chunked_body_over_the_limit_is_refused_too() -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 1024

    async with serve() as served, aiohttp.ClientSession() as session:
        response = await session.post(
            f"{served.http_url}/v1/tokens", data=chunks(), headers={"Authorization": SK}
        )
        assert response.status == 413
        assert (await response.json())["error"] == "invalid_request"
        response.release()
