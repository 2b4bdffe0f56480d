"""GET /v1/channels/{channel}/peers and POST /v1/channels/{channel}/publish (spec 10.2, 10.3)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.api.conftest import (
    Api,
    api_client,
    frame_of_type,
    serve,
    subscribe,
    ws_connect,
)

pytestmark = pytest.mark.integration

SCOPED = "Bearer sk_id_scoped:sk_secret_scoped_0123456789abcdefghijkl"


async def _token(api: Api, peer_id: str, peer_metadata: dict[str, str] | None = None) -> str:
    body: dict[str, object] = {"peerId": peer_id}
    if peer_metadata is not None:
        body["peerMetadata"] = peer_metadata
    reply = await api.call("POST", "/v1/tokens", body)
    assert reply.status == 200
    return str(reply.body["token"])


async def test_peers_lists_members_with_their_metadata_under_encoded_and_raw_names() -> None:
    async with serve() as served, api_client(served) as api:
        alice, _ = await ws_connect(
            api.session, served, f"token={await _token(api, 'alice', {'name': 'Alice'})}"
        )
        carol, _ = await ws_connect(api.session, served, f"token={await _token(api, 'carol')}")
        await subscribe(alice, "app/room-1")
        await subscribe(carol, "app/room-1")
        expected = {
            "channel": "app/room-1",
            "peers": [{"peerId": "alice", "metadata": {"name": "Alice"}}, {"peerId": "carol"}],
        }
        for path in ("/v1/channels/app%2Froom-1/peers", "/v1/channels/app/room-1/peers"):
            reply = await api.call("GET", path)
            assert (reply.status, reply.body) == (200, expected)
        empty = await api.call("GET", "/v1/channels/nobody-here/peers")
        assert empty.body == {"channel": "nobody-here", "peers": []}
        await carol.close()
        reply = await api.call("GET", "/v1/channels/app%2Froom-1/peers")
        assert [p["peerId"] for p in reply.body["peers"]] == ["alice"]
        await alice.close()


@pytest.mark.parametrize(
    ("method", "suffix", "body"), [("GET", "peers", None), ("POST", "publish", {"data": 1})]
)
@pytest.mark.parametrize(
    ("auth", "channel", "status", "code"),
    [
        (None, "bad%01name", 400, "invalid_request"),
        (None, "x" * 257, 400, "invalid_request"),
        (None, "line%0Abreak", 400, "invalid_request"),
        (None, "_metered%2Fx", 400, "channel_reserved"),
        (None, "_SYSTEM/x", 400, "channel_reserved"),
        (SCOPED, "lobby", 403, "channel_not_authorized"),
        (SCOPED, "room%2Fa%2Fdeep", 403, "channel_not_authorized"),
    ],
)
async def test_channel_errors(
    method: str,
    suffix: str,
    body: object,
    auth: str | None,
    channel: str,
    status: int,
    code: str,
) -> None:
    async with serve() as served, api_client(served) as api:
        if auth is not None:
            api.auth = auth
        reply = await api.call(method, f"/v1/channels/{channel}/{suffix}", body)
        assert (reply.status, reply.body["error"]) == (status, code), reply.body


async def test_peers_needs_the_presence_action() -> None:
    async with serve() as served, api_client(served) as api:
        api.auth = "Bearer sk_id_publisher:sk_secret_publisher_0123456789abcdefghijkl"
        reply = await api.call("GET", "/v1/channels/room%2Fa/peers")
        assert (reply.status, reply.body["error"]) == (403, "action_not_permitted")
        # The same key may publish there: its actions include publish.
        reply = await api.call("POST", "/v1/channels/room%2Fa/publish", {"data": None})
        assert reply.status == 200


async def test_publish_reaches_subscribers_with_from_and_opt_in_metadata() -> None:
    async with serve() as served, api_client(served) as api:
        plain, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        opted, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        await subscribe(plain, "news/1")
        await subscribe(opted, "news/1", include_sender_metadata=True)

        reply = await api.call("POST", "/v1/channels/news%2F1/publish", {"data": {"n": 1}})
        assert (reply.status, reply.body) == (200, {"channel": "news/1", "delivered": 2})
        for ws in (plain, opted):
            message = await frame_of_type(ws, "message")
            assert message == {
                "type": "message",
                "channel": "news/1",
                "from": "server",
                "data": {"n": 1},
            }

        reply = await api.call(
            "POST",
            "/v1/channels/news/1/publish",
            {"data": None, "from": "system", "peerMetadata": {"kind": "bot"}},
        )
        assert reply.body == {"channel": "news/1", "delivered": 2}
        message = await frame_of_type(plain, "message")
        assert message["from"] == "system" and message["data"] is None
        assert "fromMetadata" not in message
        message = await frame_of_type(opted, "message")
        assert message["fromMetadata"] == {"kind": "bot"}

        # Nobody listening is not an error.
        reply = await api.call("POST", "/v1/channels/empty/publish", {"data": "x"})
        assert reply.body == {"channel": "empty", "delivered": 0}
        await plain.close()
        await opted.close()


async def test_publish_stays_inside_the_keys_app() -> None:
    async with serve() as served, api_client(served) as api:
        listener, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        await subscribe(listener, "shared")
        api.auth = "Bearer sk_id_other:sk_secret_other_0123456789abcdefghijkl"
        reply = await api.call("POST", "/v1/channels/shared/publish", {"data": "other app"})
        assert reply.body == {"channel": "shared", "delivered": 0}
        await listener.close()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"from": "x"},
        {"data": 1, "from": ""},
        {"data": 1, "from": "é"},
        {"data": 1, "from": 5},
        {"data": 1, "peerMetadata": "bot"},
        {"data": 1, "peerMetadata": {"x": "y" * 4100}},
    ],
)
async def test_bad_publish_bodies_are_invalid_requests(body: dict[str, object]) -> None:
    async with serve() as served, api_client(served) as api:
        listener, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        await subscribe(listener, "c")
        reply = await api.call("POST", "/v1/channels/c/publish", body)
        assert (reply.status, reply.body["error"]) == (400, "invalid_request")
        # Nothing was delivered, and the subscriber still gets the next good publish.
        await api.call("POST", "/v1/channels/c/publish", {"data": "after"})
        assert (await frame_of_type(listener, "message"))["data"] == "after"
        await listener.close()


async def test_publish_counts_toward_usage() -> None:
    async with serve() as served, api_client(served) as api:
        before = (await api.call("GET", "/v1/usage")).body["messagesUsed"]
        for _ in range(3):
            await api.call("POST", "/v1/channels/c/publish", {"data": 1})
        after = (await api.call("GET", "/v1/usage")).body["messagesUsed"]
        assert after == before + 3


async def test_publish_body_over_32_kb_is_413() -> None:
    async with serve() as served, aiohttp.ClientSession() as session:
        api = Api(session, served.http_url)
        reply = await api.call("POST", "/v1/channels/c/publish", {"data": "z" * 33_000})
        assert (reply.status, reply.body["error"]) == (413, "invalid_request")
