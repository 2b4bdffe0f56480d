"""GET /v1/connections, /v1/channels and /v1/nodes on one node: shapes, filters, limits,
scope and auth (the cluster-wide answers are in tests/cluster/test_listing.py)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.api.conftest import Api, api_client, frame_of_type, serve, subscribe, ws_connect

pytestmark = pytest.mark.integration

SCOPED = "Bearer sk_id_scoped:sk_secret_scoped_0123456789abcdefghijkl"
OTHER_APP = "Bearer sk_id_other:sk_secret_other_0123456789abcdefghijkl"
PK = "Bearer pk_live_acme"


async def token(api: Api, peer_id: str) -> str:
    reply = await api.call("POST", "/v1/tokens", {"peerId": peer_id})
    assert reply.status == 200
    return str(reply.body["token"])


async def test_connections_list_every_field_and_filter_by_channel_and_peer() -> None:
    async with serve() as served, api_client(served) as api:
        before = time.time()
        alice, _ = await ws_connect(api.session, served, f"token={await token(api, 'alice')}")
        bob, _ = await ws_connect(api.session, served, f"token={await token(api, 'bob')}")
        bob_tab, _ = await ws_connect(api.session, served, f"token={await token(api, 'bob')}")
        await subscribe(alice, "room/1")
        await subscribe(alice, "devices/*/events")
        await subscribe(bob, "room/1")

        reply = await api.call("GET", "/v1/connections")
        assert reply.status == 200
        listed = reply.body["connections"]
        assert [c["peerId"] for c in listed] == ["alice", "bob", "bob"]
        first = listed[0]
        assert set(first) == {
            "peerId",
            "channels",
            "remoteAddr",
            "connectedAt",
            "node",
            "framesIn",
            "framesOut",
        }
        assert first["channels"] == ["room/1", "devices/*/events"]
        assert first["remoteAddr"] == "127.0.0.1"
        assert before - 1 <= first["connectedAt"] <= time.time()
        assert first["framesIn"] == 2
        # welcome, 2 acks, 1 presence snapshot (the pattern gets an empty one too), bob joined
        assert first["framesOut"] >= 5
        assert {c["node"] for c in listed} == {listed[0]["node"]}

        by_channel = await api.call("GET", "/v1/connections?channel=room%2F1")
        assert [c["peerId"] for c in by_channel.body["connections"]] == ["alice", "bob"]
        by_pattern = await api.call("GET", "/v1/connections?channel=devices/*/events")
        assert [c["peerId"] for c in by_pattern.body["connections"]] == ["alice"]
        by_peer = await api.call("GET", "/v1/connections?peerId=bob")
        assert [c["channels"] for c in by_peer.body["connections"]] == [["room/1"], []]
        both = await api.call("GET", "/v1/connections?peerId=bob&channel=room/1")
        assert len(both.body["connections"]) == 1
        limited = await api.call("GET", "/v1/connections?limit=2")
        assert [c["peerId"] for c in limited.body["connections"]] == ["alice", "bob"]
        # Another app's key sees none of them (tenancy).
        other = await api.call("GET", "/v1/connections", auth=OTHER_APP)
        assert other.body == {"connections": []}
        # A scoped key of the same app sees them all, as it may kick them all.
        scoped = await api.call("GET", "/v1/connections", auth=SCOPED)
        assert len(scoped.body["connections"]) == 3

        await bob_tab.close()
        await bob.close()
        reply = await api.call("GET", "/v1/connections")
        assert [c["peerId"] for c in reply.body["connections"]] == ["alice"]
        await alice.close()


async def test_channels_list_subscribers_peers_and_rate_within_the_keys_scope() -> None:
    async with serve() as served, api_client(served) as api:
        alice, _ = await ws_connect(api.session, served, f"token={await token(api, 'alice')}")
        alice_tab, _ = await ws_connect(api.session, served, f"token={await token(api, 'alice')}")
        bob, _ = await ws_connect(api.session, served, f"token={await token(api, 'bob')}")
        for ws in (alice, alice_tab, bob):
            await subscribe(ws, "room/1")
        await subscribe(bob, "lobby")
        for n in range(6):
            await alice.send_json({"type": "publish", "channel": "room/1", "data": n})
        await frame_of_type(bob, "message")
        published = await api.call("POST", "/v1/channels/telemetry%2Fd1/publish", {"data": 1})
        assert published.status == 200

        reply = await api.call("GET", "/v1/channels")
        assert reply.status == 200
        listed = {c["channel"]: c for c in reply.body["channels"]}
        assert list(listed) == ["lobby", "room/1", "telemetry/d1"]  # by name
        assert {k: v for k, v in listed["room/1"].items() if k != "messagesPerSecond"} == {
            "channel": "room/1",
            "subscribers": 3,
            "peers": 2,
        }
        assert listed["room/1"]["messagesPerSecond"] > 0
        assert listed["telemetry/d1"]["subscribers"] == 0
        assert listed["lobby"]["messagesPerSecond"] == 0

        prefixed = await api.call("GET", "/v1/channels?prefix=room/")
        assert [c["channel"] for c in prefixed.body["channels"]] == ["room/1"]
        limited = await api.call("GET", "/v1/channels?limit=1")
        assert [c["channel"] for c in limited.body["channels"]] == ["lobby"]
        # The scoped key's channel_patterns are ["room/*"]: the others stay hidden.
        scoped = await api.call("GET", "/v1/channels", auth=SCOPED)
        assert [c["channel"] for c in scoped.body["channels"]] == ["room/1"]
        other = await api.call("GET", "/v1/channels", auth=OTHER_APP)
        assert other.body == {"channels": []}
        for ws in (alice, alice_tab, bob):
            await ws.close()


async def test_nodes_name_the_answering_node_with_the_apps_counts() -> None:
    async with serve() as served, api_client(served) as api:
        alice, _ = await ws_connect(api.session, served, f"token={await token(api, 'alice')}")
        await subscribe(alice, "room/1")
        reply = await api.call("GET", "/v1/nodes")
        assert reply.status == 200
        (node,) = reply.body["nodes"]
        assert node == {"node": reply.body["node"], "connections": 1, "channels": 1}
        other = await api.call("GET", "/v1/nodes", auth=OTHER_APP)
        assert other.body["nodes"][0]["connections"] == 0
        await alice.close()


@pytest.mark.parametrize("path", ["/v1/connections", "/v1/channels", "/v1/nodes"])
@pytest.mark.parametrize(
    "auth",
    [None, PK, "Bearer sk_id_acme:wrong", "Bearer sk_id_acme", "Basic abc"],
    ids=["none", "publishable", "wrong-secret", "no-secret", "not-bearer"],
)
async def test_listings_need_a_secret_key(path: str, auth: str | None) -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("GET", path, auth=auth)
        assert (reply.status, reply.body["error"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=",
        "limit=-1",
        "limit=%C2%B2",
        "channel=bad%01name",
        "peerId=%C3%A9",
        "peerId=" + "x" * 129,
        "channel=" + "c" * 257,
    ],
)
async def test_bad_connection_queries_are_refused(query: str) -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("GET", f"/v1/connections?{query}")
        assert (reply.status, reply.body["error"]) == (400, "invalid_request"), reply.body
        assert (await api.call("GET", "/v1/connections")).status == 200  # nothing broke


@pytest.mark.parametrize("query", ["limit=0", "prefix=%01", "prefix=" + "p" * 257])
async def test_bad_channel_queries_are_refused(query: str) -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("GET", f"/v1/channels?{query}")
        assert (reply.status, reply.body["error"]) == (400, "invalid_request"), reply.body


async def test_a_kicked_peer_leaves_the_listing() -> None:
    async with serve() as served, api_client(served) as api:
        ws, _ = await ws_connect(api.session, served, f"token={await token(api, 'mallory')}")
        await subscribe(ws, "room/1")
        kicked = await api.call("DELETE", "/v1/peers/mallory")
        assert kicked.body["closed"] == 1
        closing = await ws.receive(timeout=5)
        while closing.type is aiohttp.WSMsgType.TEXT:  # what was queued before the close
            closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4020
        reply = await api.call("GET", "/v1/connections?peerId=mallory")
        assert reply.body == {"connections": []}
        channels = await api.call("GET", "/v1/channels")
        assert channels.body == {"channels": []}
