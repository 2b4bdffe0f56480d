"""DELETE /v1/peers/{peerId}, GET /v1/usage, credentials, rate limits, 404/405, 503."""

from __future__ import annotations

import time

import aiohttp
import pytest

from hubbub.api.errors import api_errors
from hubbub.api.rest import RestApi, RestSettings
from hubbub.auth.client_ip import TrustedProxies
from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.config import key_ring_of, parse_config
from hubbub.core.broker import (
    AppQuota,
    BrokerUnavailable,
    PresenceEntry,
    Publication,
    UsageSnapshot,
)
from hubbub.core.node import Node, NodeLimits
from hubbub.core.timers import LoopScheduler
from tests.api.conftest import (
    API_TOML,
    SK,
    Api,
    api_client,
    frame_of_type,
    serve,
    serve_app,
    subscribe,
    ws_connect,
)

pytestmark = pytest.mark.integration


async def _token(api: Api, peer_id: str) -> str:
    reply = await api.call("POST", "/v1/tokens", {"peerId": peer_id})
    return str(reply.body["token"])


async def test_kick_closes_every_connection_of_the_peer_with_4020() -> None:
    async with serve() as served, api_client(served) as api:
        token = await _token(api, "alice")
        tabs = [(await ws_connect(api.session, served, f"token={token}"))[0] for _ in range(2)]
        bystander, _ = await ws_connect(api.session, served, f"token={await _token(api, 'bob')}")
        await subscribe(bystander, "room")

        reply = await api.call("DELETE", "/v1/peers/alice")
        assert (reply.status, reply.body) == (200, {"peerId": "alice", "closed": 2})
        for ws in tabs:
            message = await ws.receive(timeout=5)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert message.data == 4020
        # Other peers are untouched.
        await api.call("POST", "/v1/channels/room/publish", {"data": "still here"})
        assert (await frame_of_type(bystander, "message"))["data"] == "still here"

        again = await api.call("DELETE", "/v1/peers/alice")
        assert (again.status, again.body) == (200, {"peerId": "alice", "closed": 0})
        await bystander.close()


async def test_kick_stays_inside_the_keys_app() -> None:
    async with serve() as served, api_client(served) as api:
        alice, _ = await ws_connect(api.session, served, f"token={await _token(api, 'alice')}")
        api.auth = "Bearer sk_id_other:sk_secret_other_0123456789abcdefghijkl"
        reply = await api.call("DELETE", "/v1/peers/alice")
        assert reply.body == {"peerId": "alice", "closed": 0}
        await alice.send_json({"type": "ping"})
        assert (await frame_of_type(alice, "pong"))["type"] == "pong"
        await alice.close()


@pytest.mark.parametrize("peer_id", ["%C3%A9", "a%0Ab", "x" * 129])
async def test_kick_refuses_an_invalid_peer_id(peer_id: str) -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("DELETE", f"/v1/peers/{peer_id}")
        assert (reply.status, reply.body["error"]) == (400, "invalid_request")


async def test_kick_accepts_an_encoded_peer_id_with_a_slash() -> None:
    async with serve() as served, api_client(served) as api:
        token = await _token(api, "team/alice")
        ws, _ = await ws_connect(api.session, served, f"token={token}")
        reply = await api.call("DELETE", "/v1/peers/team%2Falice")
        assert reply.body == {"peerId": "team/alice", "closed": 1}
        assert (await ws.receive(timeout=5)).data == 4020


async def test_usage_reports_the_spec_fields_and_the_plan() -> None:
    async with serve() as served, api_client(served) as api:
        first, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        second, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        await second.close()
        await first.send_json({"type": "publish", "channel": "c", "data": 1, "requestId": "p"})
        await frame_of_type(first, "ack")
        reply = await api.call("GET", "/v1/usage")
        assert reply.status == 200
        usage = reply.body
        assert usage["appId"] == "acme"
        assert usage["concurrentNow"] == 1
        assert usage["peakConcurrent"] == 2
        assert usage["messagesUsed"] == 1
        assert usage["periodStartUnix"] <= time.time() < usage["periodEndUnix"]
        assert usage["periodEndUnix"] - usage["periodStartUnix"] == 30 * 24 * 3600
        assert usage["overageMessages"] == 0 and usage["overageConnections"] == 0
        assert usage["plan"] == {
            "name": "ACME_TEST",
            "maxConcurrentConnections": None,
            "maxMessagesPerPeriod": 100000,
            "overagesAllowed": False,
            "overagesEnabled": False,
        }
        # Usage is per app: the other app has seen nothing.
        api.auth = "Bearer sk_id_other:sk_secret_other_0123456789abcdefghijkl"
        other = (await api.call("GET", "/v1/usage")).body
        assert (other["appId"], other["concurrentNow"], other["messagesUsed"]) == ("other", 0, 0)
        assert other["plan"]["name"] is None
        await first.close()


BAD_CREDENTIALS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic c2tfaWRfYWNtZTpzZWNyZXQ=",
    "Bearer sk_id_acme",
    "Bearer sk_id_acme:",
    "Bearer sk_id_acme:wrong",
    "Bearer sk_id_nope:sk_secret_acme_0123456789abcdefghijkl",
    "Bearer pk_live_acme",
    "Bearer pk_live_acme:anything",
    "Bearer sk_live_not_configured",
    "Bearer sk_secret_acme_0123456789abcdefghijkl",
]


@pytest.mark.parametrize("credential", BAD_CREDENTIALS)
async def test_every_credential_problem_gets_the_same_401(credential: str | None) -> None:
    async with serve() as served, api_client(served) as api:
        for method, path, body in [
            ("POST", "/v1/tokens", {"peerId": "a"}),
            ("GET", "/v1/channels/c/peers", None),
            ("POST", "/v1/channels/c/publish", {"data": 1}),
            ("DELETE", "/v1/peers/a", None),
            ("GET", "/v1/usage", None),
        ]:
            reply = await api.call(method, path, body, auth=credential)
            assert reply.status == 401
            assert reply.body == {
                "error": "unauthorized",
                "message": "missing or invalid credentials",
            }
            assert reply.headers["WWW-Authenticate"] == "Bearer"


async def test_the_legacy_sk_live_secret_alone_is_accepted() -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("GET", "/v1/usage", auth="Bearer sk_live_0123456789abcdefghij")
        assert reply.status == 401
        reply = await api.call("GET", "/v1/usage", auth="Bearer sk_live_0123456789abcdef")
        assert (reply.status, reply.body["appId"]) == (200, "acme")
        # The id:secret form works for the same key as well.
        reply = await api.call(
            "GET", "/v1/usage", auth="bearer sk_id_legacy:sk_live_0123456789abcdef"
        )
        assert reply.status == 200


async def test_unknown_endpoints_and_wrong_methods_answer_json() -> None:
    async with serve() as served, api_client(served) as api:
        for path in ("/v1/nothing", "/v1/channels/c", "/v1/peers"):
            reply = await api.call("GET", path)
            assert (reply.status, reply.body["error"]) == (404, "not_found"), path
        # An empty name reaches the endpoint and is refused as a bad request (spec 10.2, 10.4).
        for method, path in (("GET", "/v1/channels//peers"), ("DELETE", "/v1/peers/")):
            reply = await api.call(method, path)
            assert (reply.status, reply.body["error"]) == (400, "invalid_request"), path
        reply = await api.call("PUT", "/v1/usage")
        assert (reply.status, reply.body["error"]) == (405, "method_not_allowed")
        assert "GET" in reply.headers["Allow"]
        reply = await api.call("GET", "/v1/tokens")
        assert (reply.status, reply.headers["Allow"]) == (405, "POST")
        reply = await api.call("POST", "/v1/peers/alice")
        assert (reply.status, reply.headers["Allow"]) == (405, "DELETE")


async def test_the_openapi_document_is_public() -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("GET", "/v1/openapi.json", auth=None)
        assert reply.status == 200
        assert reply.body["openapi"].startswith("3.1")
        assert set(reply.body["paths"]) == {
            "/v1/tokens",
            "/v1/channels/{channel}/peers",
            "/v1/channels/{channel}/publish",
            "/v1/channels/{channel}/history",
            "/v1/peers/{peerId}",
            "/v1/usage",
            "/v1/openapi.json",
            "/v1/connections",
            "/v1/channels",
            "/v1/nodes",
            "/v1/conversations",
            "/v1/conversations/{conversationId}",
            "/v1/conversations/{conversationId}/events",
            "/v1/conversations/{conversationId}/say",
            "/v1/conversations/{conversationId}/input",
            "/v1/conversations/{conversationId}/stage",
            "/v1/conversations/{conversationId}/end",
        }


LIMITED_TOML = API_TOML.replace(
    "requests_per_second_per_key = 1000\nrequest_burst_per_key = 1000",
    "requests_per_second_per_key = 0.001\nrequest_burst_per_key = 3",
)


async def test_per_key_rate_limit_answers_429_and_spares_other_keys() -> None:
    async with serve(LIMITED_TOML) as served, api_client(served) as api:
        statuses = [(await api.call("GET", "/v1/usage")).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        reply = await api.call("GET", "/v1/usage")
        assert (reply.status, reply.body["error"], reply.headers["Retry-After"]) == (
            429,
            "rate_limited",
            "1",
        )
        other = await api.call("GET", "/v1/usage", auth="Bearer sk_live_0123456789abcdef")
        assert other.status == 200


IP_LIMITED_TOML = API_TOML.replace(
    "requests_per_second_per_ip = 1000\nrequest_burst_per_ip = 1000",
    "requests_per_second_per_ip = 0.001\nrequest_burst_per_ip = 3",
)


async def test_per_ip_rate_limit_counts_unauthenticated_requests_too() -> None:
    async with serve(IP_LIMITED_TOML) as served, api_client(served) as api:
        statuses = [
            (await api.call("GET", "/v1/usage", auth="Bearer guess:me")).status for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        reply = await api.call("GET", "/v1/usage")
        assert (reply.status, reply.body["error"]) == (429, "rate_limited")
        # The WebSocket endpoint on the same port is not affected by the REST limit.
        ws, _ = await ws_connect(api.session, served, "key=pk_live_acme")
        await ws.close()


class _DownBroker(MemoryBroker):
    """A broker whose backend is gone: every request fails as a transient fault."""

    async def publish(self, publication: Publication, *, count_everywhere: bool = False) -> int:
        raise BrokerUnavailable("down")

    async def disconnect_peer(self, app_id: str, peer_id: str, code: int, reason: str) -> int:
        raise BrokerUnavailable("down")


class _DownPresence(MemoryPresenceStore):
    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        raise BrokerUnavailable("down")


class _DownUsage(MemoryUsageStore):
    async def snapshot(self, app_id: str, quota: AppQuota, now: float) -> UsageSnapshot:
        raise BrokerUnavailable("down")


async def test_backend_faults_answer_503_internal_error() -> None:
    from aiohttp import web

    config = parse_config(API_TOML)
    node = Node(
        node_id="test",
        broker=_DownBroker(),
        presence=_DownPresence(),
        usage=_DownUsage(),
        limits=NodeLimits(),
        quotas={},
        clock=time.time,
        scheduler=LoopScheduler(),
    )
    app = web.Application(middlewares=[api_errors])
    RestApi(node, key_ring_of(config), RestSettings(), TrustedProxies([])).add_routes(app)

    async def start(app: web.Application) -> None:
        await node.start()

    app.on_startup.append(start)
    async with serve_app(app) as served, api_client(served) as api:
        for method, path, body in [
            ("GET", "/v1/channels/c/peers", None),
            ("POST", "/v1/channels/c/publish", {"data": 1}),
            ("DELETE", "/v1/peers/a", None),
            ("GET", "/v1/usage", None),
        ]:
            reply = await api.call(method, path, body)
            assert (reply.status, reply.body["error"]) == (503, "internal_error"), path
        # Minting needs no backend and still works.
        reply = await api.call("POST", "/v1/tokens", {"peerId": "a"}, auth=SK)
        assert reply.status == 200


class _BuggyPresence(MemoryPresenceStore):
    async def members(self, app_id: str, channel: str) -> list[PresenceEntry]:
        raise RuntimeError("secret internals")


async def test_an_unexpected_fault_is_a_json_500_without_details() -> None:
    from aiohttp import web

    node = Node(
        node_id="test",
        broker=MemoryBroker(),
        presence=_BuggyPresence(),
        usage=MemoryUsageStore(),
        limits=NodeLimits(),
        quotas={},
        clock=time.time,
        scheduler=LoopScheduler(),
    )
    keys = key_ring_of(parse_config(API_TOML))
    app = web.Application(middlewares=[api_errors])
    RestApi(node, keys, RestSettings(), TrustedProxies([])).add_routes(app)
    async with serve_app(app) as served, api_client(served) as api:
        reply = await api.call("GET", "/v1/channels/c/peers")
        assert reply.status == 500
        assert reply.body == {"error": "internal_error", "message": "internal error"}
        assert (await api.call("GET", "/v1/usage")).status == 200


PROXIED_TOML = 'server.trusted_proxies = ["127.0.0.1/32"]\n' + IP_LIMITED_TOML


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() -> None:
    async with serve(PROXIED_TOML) as served, aiohttp.ClientSession() as session:

        async def usage_status(client: str) -> int:
            async with session.get(
                f"{served.http_url}/v1/usage",
                headers={"Authorization": SK, "X-Forwarded-For": client},
            ) as response:
                return response.status

        assert [await usage_status("203.0.113.7") for _ in range(4)] == [200, 200, 200, 429]
        assert await usage_status("198.51.100.1") == 200
