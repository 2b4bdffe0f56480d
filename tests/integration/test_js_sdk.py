"""The official JS SDK (``@metered-ca/realtime`` 1.2.0) under Node against a real server.

Each test starts ``hubbub serve``, runs one scenario script from ``js/`` (which asserts with
``node:assert`` and prints a JSON summary) and checks the summary from Python as well.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from tests.integration.conftest import (
    NODE_SCENARIO_TIMEOUT_S,
    finish_node_scenario,
    run_node_scenario,
    start_node_scenario,
)
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server
from tests.support.tokens import mint_token

pytestmark = pytest.mark.integration

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _channel(prefix: str = "room") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_publishable_key_connect(demo_server: ServerProcess) -> None:
    summary = await run_node_scenario("connect_pk.mjs", {"url": demo_server.ws_url})
    assert all(UUID.match(peer_id) for peer_id in summary["peerIds"])
    assert summary["expiresAt"] is None
    assert summary["maxMessageSize"] == 65536


async def test_jwt_from_token_provider(demo_server: ServerProcess) -> None:
    metadata = {"name": "Alice", "role": "host"}
    token, exp = mint_token("alice", peerMetadata=metadata)
    other_token, _ = mint_token("bob")
    summary = await run_node_scenario(
        "jwt_identity.mjs",
        {
            "url": demo_server.ws_url,
            "token": token,
            "otherToken": other_token,
            "sub": "alice",
            "exp": exp,
            "peerMetadata": metadata,
            "channel": _channel(),
        },
    )
    assert summary["peerId"] == "alice"
    assert summary["expiresAt"] == exp
    assert summary["providerCalls"] == 1
    assert summary["snapshot"]["joined"] == [{"peerId": "alice", "metadata": metadata}]
    # Decision 15: left entries carry the peer's metadata too.
    assert summary["left"]["left"] == [{"peerId": "alice", "metadata": metadata}]
    assert summary["otherPeerId"] == "bob"


async def test_presence_snapshot_and_deltas_between_sdk_peers(
    demo_server: ServerProcess,
) -> None:
    carol_metadata = {"name": "Carol"}
    carol_token, _ = mint_token("carol", peerMetadata=carol_metadata)
    summary = await run_node_scenario(
        "presence.mjs",
        {
            "url": demo_server.ws_url,
            "channel": _channel(),
            "carolToken": carol_token,
            "carolSub": "carol",
            "carolMetadata": carol_metadata,
        },
    )
    observer, alice, bob = summary["observerId"], summary["aliceId"], summary["bobId"]
    # The observer saw exactly: its empty snapshot, then each change as one delta.
    deltas = [
        ([p["peerId"] for p in frame["joined"]], [p["peerId"] for p in frame["left"]])
        for frame in summary["observed"]
    ]
    assert deltas[:5] == [([], []), ([alice], []), ([bob], []), (["carol"], []), ([], [bob])]
    # alice and carol closed together: their departures may share one frame.
    assert all(joined == [] for joined, _ in deltas[5:])
    assert sorted(peer for _, left in deltas[5:] for peer in left) == sorted([alice, "carol"])
    # alice's snapshot named the observer; bob's named the observer and alice.
    assert summary["aliceSaw"] == [observer, bob, "carol"]
    assert sorted(summary["bobSaw"][:2]) == sorted([observer, alice])
    assert summary["bobSaw"][2:] == ["carol"]


async def test_publish_with_and_without_sender_metadata(demo_server: ServerProcess) -> None:
    metadata = {"displayName": "Sender", "avatar": 7}
    token, _ = mint_token("sender-1", peerMetadata=metadata)
    summary = await run_node_scenario(
        "publish.mjs",
        {
            "url": demo_server.ws_url,
            "channel": _channel(),
            "senderToken": token,
            "senderSub": "sender-1",
            "senderMetadata": metadata,
        },
    )
    assert summary["withMetadata"]["fromMetadata"] == metadata
    assert "fromMetadata" not in summary["noMetadataSender"]
    assert "fromMetadata" not in summary["withoutOptIn"]
    assert summary["senderGot"] == [2, 3]
    assert summary["optedInGot"] == [1, 2]


async def test_direct_and_peer_not_found(demo_server: ServerProcess) -> None:
    alice_token, _ = mint_token("alice")
    bob_token, _ = mint_token("bob")
    summary = await run_node_scenario(
        "direct.mjs",
        {
            "url": demo_server.ws_url,
            "channel": _channel(),
            "aliceToken": alice_token,
            "aliceSub": "alice",
            "bobToken": bob_token,
            "bobSub": "bob",
        },
    )
    assert summary == {
        "received": 21,
        "errorName": "peer_not_found",
        "peerErrorName": "peer_not_found",
    }


async def test_channel_not_authorized_for_a_narrow_token(demo_server: ServerProcess) -> None:
    scoped_token, _ = mint_token("scoped", channels=["team-a/*"])
    scoped_peer_token, _ = mint_token("scoped-peer", channels=["team-a/*"])
    other_token, _ = mint_token("other")
    summary = await run_node_scenario(
        "not_authorized.mjs",
        {
            "url": demo_server.ws_url,
            "scopedToken": scoped_token,
            "scopedPeerToken": scoped_peer_token,
            "otherToken": other_token,
            "allowedChannel": "team-a/standup",
            "deniedChannel": "team-b/standup",
        },
    )
    assert summary == {
        "subscribeError": "channel_not_authorized",
        "publishError": "channel_not_authorized",
        "joinError": "channel_not_authorized",
    }


async def test_token_expiry_closes_4002_before_exp(demo_server: ServerProcess) -> None:
    token, exp = mint_token("short-lived", expires_in_s=4)
    summary = await run_node_scenario(
        "expiry.mjs",
        {
            "url": demo_server.ws_url,
            "token": token,
            "exp": exp,
            "channel": _channel(),
            "waitMs": 20_000,
        },
    )
    assert summary["code"] == 4002
    assert summary["willReconnect"] is True
    # The server closes 250 ms before exp; allow for a loaded machine on both sides.
    early_ms = exp * 1000 - summary["observedAtMs"]
    assert -1000 <= early_ms <= 1250, f"closed {early_ms} ms before exp"


async def test_graceful_shutdown_as_the_sdk_sees_it() -> None:
    async with running_server(DEMO_APP_TOML) as server:
        params = {"url": server.ws_url, "channel": _channel(), "waitMs": 30_000}
        process = await start_node_scenario("shutdown.mjs", params)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(NODE_SCENARIO_TIMEOUT_S):
                ready = await process.stdout.readline()
            assert json.loads(ready) == {"ready": True}, ready
            assert await server.stop(timeout_s=30) == 0
            summary = await finish_node_scenario("shutdown.mjs", process)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert summary["retryAfterMs"] > 0
    assert (summary["code"], summary["willReconnect"]) == (1001, True)
    assert summary["peerState"] == "reconnecting"


async def test_sdk_pings_keep_an_idle_connection_up(demo_server: ServerProcess) -> None:
    # The SDK pings after max(1 s, window / 3) of silence; without pongs it would drop and
    # reconnect (close 4000) at the end of each 2.4 s window.
    summary = await run_node_scenario(
        "app_keepalive.mjs", {"url": demo_server.ws_url, "inactivityMs": 2400, "idleMs": 5500}
    )
    assert summary == {"disconnects": 0, "connects": 1}


async def test_expired_token_is_refreshed_and_presence_rebuilt(demo_server: ServerProcess) -> None:
    short_token, _ = mint_token("alice", expires_in_s=3)
    long_token, long_exp = mint_token("alice")
    summary = await run_node_scenario(
        "token_refresh.mjs",
        {
            "url": demo_server.ws_url,
            "channel": _channel(),
            "sub": "alice",
            "shortToken": short_token,
            "longToken": long_token,
            "longExp": long_exp,
            "waitMs": 20_000,
        },
    )
    assert summary == {"providerCalls": 2, "expiredCode": 4002, "reconnectExpiresAt": long_exp}
