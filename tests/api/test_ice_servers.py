"""The key's ICE servers reach welcome.metadata.iceServers and minted tokens (spec 3.1, 11.4)."""

from __future__ import annotations

import time

import pytest

from hubbub.auth.tokens import mint_token
from hubbub.auth.turn import turn_credentials
from hubbub.config import key_ring_of, parse_config
from tests.api.conftest import API_TOML, TURN_SECRET, api_client, serve, ws_connect

pytestmark = pytest.mark.integration

KEYS = key_ring_of(parse_config(API_TOML))


def _assert_turn_entry(entry: dict[str, object], peer_id: str, min_expiry: int) -> None:
    assert entry["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    username = str(entry["username"])
    expiry, _, named = username.partition(":")
    assert named == peer_id
    assert int(expiry) >= min_expiry
    assert entry["credential"] == turn_credentials(TURN_SECRET, peer_id, int(expiry))[1]


async def test_a_publishable_key_welcome_carries_static_and_turn_servers() -> None:
    async with serve() as served, api_client(served) as api:
        ws, welcome = await ws_connect(api.session, served, "key=pk_live_acme")
        servers = welcome["metadata"]["iceServers"]
        assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
        _assert_turn_entry(servers[1], welcome["peerId"], int(time.time()) + 590)
        await ws.close()


async def test_a_self_signed_jwt_gets_the_keys_servers_unless_it_brings_its_own() -> None:
    key = KEYS.secret("sk_id_acme")
    assert key is not None
    now = int(time.time())
    plain = mint_token(key, "alice", expires_at=now + 60, issued_at=now, metadata={"x": 1})
    own_servers = [{"urls": "stun:mine.example.org"}]
    own = mint_token(
        key, "bob", expires_at=now + 60, issued_at=now, metadata={"iceServers": own_servers}
    )
    async with serve() as served, api_client(served) as api:
        ws, welcome = await ws_connect(api.session, served, f"token={plain}")
        assert welcome["metadata"]["x"] == 1
        [entry] = welcome["metadata"]["iceServers"]
        _assert_turn_entry(entry, "alice", now + 86000)
        await ws.close()
        ws, welcome = await ws_connect(api.session, served, f"token={own}")
        assert welcome["metadata"] == {"iceServers": own_servers}
        await ws.close()


async def test_minted_tokens_carry_the_servers_for_at_least_their_lifetime() -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("POST", "/v1/tokens", {"peerId": "carol", "expiresInSec": 86400})
        expires_at = reply.body["expiresAt"]
        ws, welcome = await ws_connect(api.session, served, f"token={reply.body['token']}")
        [entry] = welcome["metadata"]["iceServers"]
        _assert_turn_entry(entry, "carol", expires_at)
        await ws.close()

        own = {"iceServers": [{"urls": "stun:own"}], "room": "r"}
        reply = await api.call("POST", "/v1/tokens", {"peerId": "dave", "metadata": own})
        ws, welcome = await ws_connect(api.session, served, f"token={reply.body['token']}")
        assert welcome["metadata"] == own
        await ws.close()


async def test_metadata_that_leaves_no_room_for_the_servers_is_refused() -> None:
    async with serve() as served, api_client(served) as api:
        # Under 8 KB alone, over it once the key's TURN entry is added.
        metadata = {"pad": "x" * (8192 - 60)}
        reply = await api.call("POST", "/v1/tokens", {"peerId": "erin", "metadata": metadata})
        assert (reply.status, reply.body["error"]) == (400, "invalid_request")
        assert "iceServers" in reply.body["message"]
