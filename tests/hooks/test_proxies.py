"""Every outcome of the connect, subscribe and publish proxies against a real backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from hubbub.auth.connect import ConnectAttempt, HttpRejection
from hubbub.core.authorizer import Verdict
from hubbub.core.principal import ChannelScope, Principal
from hubbub.hooks.proxies import BackendProxies, KeyProxies
from tests.support.backend import HANG, Backend

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.3
ALICE = Principal(
    app_id="app",
    peer_id="alice",
    key_id="pk_site",
    actions=frozenset({"publish", "subscribe"}),
    scope=ChannelScope(()),
    peer_metadata=b'{"name":"Alice"}',
)


@pytest.fixture
async def proxies(backend: Backend) -> AsyncIterator[BackendProxies]:
    proxies = BackendProxies(
        {
            "pk_site": KeyProxies(
                app_id="app",
                connect_url=backend.url("/connect"),
                subscribe_url=backend.url("/subscribe"),
                publish_url=backend.url("/publish"),
                timeout_s=TIMEOUT_S,
                forwarded_headers=frozenset({"cookie", "user-agent"}),
            ),
            "pk_plain": KeyProxies(app_id="app"),
        },
        max_data_bytes=1024,
    )
    yield proxies
    await proxies.close()


def attempt(**headers: str) -> ConnectAttempt:
    return ConnectAttempt(
        key="pk_site",
        token=None,
        origin=None,
        remote_addr="127.0.0.5",
        headers=headers,
        query={"key": "pk_site", "room": "7"},
    )


def test_which_connections_a_key_covers(proxies: BackendProxies) -> None:
    plain = Principal("app", "bob", "pk_plain", frozenset(), ChannelScope(()))
    assert proxies.covers_subscribe(ALICE) and proxies.covers_publish(ALICE)
    assert not proxies.covers_subscribe(plain) and not proxies.covers_publish(plain)
    assert proxies.covers_connect("pk_site") and not proxies.covers_connect("pk_plain")


# --- subscribe ---------------------------------------------------------------------------------


async def test_subscribe_allowed_with_the_documented_body(
    backend: Backend, proxies: BackendProxies
) -> None:
    assert await proxies.subscribe(ALICE, "room/1") == Verdict()
    (request,) = backend.received("/subscribe")
    assert request.json == {
        "app": "app",
        "peerId": "alice",
        "channel": "room/1",
        "peerMetadata": {"name": "Alice"},
    }
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (403, {"code": "room_full"}, "room_full"),
        (403, None, "channel_not_authorized"),
        (403, {"code": "Not A Code!"}, "channel_not_authorized"),
        (403, b"not json", "channel_not_authorized"),
        (401, None, "backend_error"),
        (500, {"code": "room_full"}, "backend_error"),
        (302, None, "backend_error"),
    ],
)
async def test_subscribe_refused_or_failed(
    backend: Backend, proxies: BackendProxies, status: int, body: object, code: str
) -> None:
    backend.answer("/subscribe", status, body)
    assert await proxies.subscribe(ALICE, "room/1") == Verdict(code=code)


async def test_subscribe_timeout_and_backend_down(
    backend: Backend, proxies: BackendProxies
) -> None:
    backend.answer("/subscribe", HANG)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await proxies.subscribe(ALICE, "room") == Verdict(code="backend_error")
    assert TIMEOUT_S <= loop.time() - began < TIMEOUT_S + 1.0
    await backend.stop()
    assert await proxies.subscribe(ALICE, "room") == Verdict(code="backend_error")
    assert proxies.stats.requests[("subscribe", "timeout")] == 1
    assert proxies.stats.requests[("subscribe", "unreachable")] == 1


# --- publish -----------------------------------------------------------------------------------


async def test_publish_as_sent_replaced_or_refused(
    backend: Backend, proxies: BackendProxies
) -> None:
    answers = iter(
        [
            (200, {}),
            (200, None),  # an empty body means the same
            (200, {"data": {"clean": True}}),
            (200, {"data": None}),  # replaced by null
            (403, {"code": "too_loud"}),
            (403, None),
        ]
    )
    backend.answer("/publish", lambda _: next(answers))
    data = b'{"text":"hi","n":[1,2]}'
    verdicts = [await proxies.publish(ALICE, "room", data) for _ in range(6)]
    assert verdicts == [
        Verdict(),
        Verdict(),
        Verdict(data=b'{"clean": true}'),  # the backend's bytes, spliced as they came
        Verdict(data=b"null"),
        Verdict(code="too_loud"),
        Verdict(code="action_not_permitted"),
    ]
    assert backend.received("/publish")[0].json == {
        "app": "app",
        "peerId": "alice",
        "channel": "room",
        "data": {"text": "hi", "n": [1, 2]},
    }


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"not json"),
        (200, b"[1, 2]"),
        (200, b'{"data": }'),
        (200, {"data": "x" * 2000}),  # a replacement over max_data_bytes
        (500, {}),
        (404, None),
    ],
)
async def test_publish_malformed_or_failed_is_a_backend_error(
    backend: Backend, proxies: BackendProxies, status: int, body: object
) -> None:
    backend.answer("/publish", status, body)
    assert await proxies.publish(ALICE, "room", b"1") == Verdict(code="backend_error")


async def test_publish_timeout_and_backend_down(backend: Backend, proxies: BackendProxies) -> None:
    backend.answer("/publish", HANG)
    assert await proxies.publish(ALICE, "room", b"1") == Verdict(code="backend_error")
    await backend.stop()
    assert await proxies.publish(ALICE, "room", b"1") == Verdict(code="backend_error")


# --- connect -----------------------------------------------------------------------------------


async def test_connect_forwards_only_the_allowed_headers(
    backend: Backend, proxies: BackendProxies
) -> None:
    claims = {"peerId": "u_42", "channels": ["room/*"], "peerMetadata": {"name": "Ann"}}
    backend.answer("/connect", 200, claims)
    answer = await proxies.identify(
        "pk_site",
        attempt(
            Cookie="session=abc",
            Authorization="Bearer secret-of-another-system",
            **{"User-Agent": "test", "X-Internal": "never"},
        ),
    )
    assert answer == claims
    (request,) = backend.received("/connect")
    assert request.json == {
        "app": "app",
        "key": "pk_site",
        "remoteAddr": "127.0.0.5",
        "headers": {"cookie": "session=abc", "user-agent": "test"},
        "query": {"key": "pk_site", "room": "7"},
    }


@pytest.mark.parametrize(
    ("status", "body", "rejection"),
    [
        (401, None, HttpRejection(401, "unauthorized")),
        (403, {"reason": "banned"}, HttpRejection(401, "unauthorized")),
        (500, None, HttpRejection(503, "backend_error")),
        (200, b"not json", HttpRejection(503, "backend_error")),
        (200, b'["u_42"]', HttpRejection(503, "backend_error")),
    ],
)
async def test_connect_refused_or_failed(
    backend: Backend,
    proxies: BackendProxies,
    status: int,
    body: object,
    rejection: HttpRejection,
) -> None:
    backend.answer("/connect", status, body)
    assert await proxies.identify("pk_site", attempt()) == rejection


async def test_connect_timeout_and_backend_down(backend: Backend, proxies: BackendProxies) -> None:
    backend.answer("/connect", HANG)
    assert await proxies.identify("pk_site", attempt()) == HttpRejection(503, "backend_error")
    await backend.stop()
    assert await proxies.identify("pk_site", attempt()) == HttpRejection(503, "backend_error")
    assert json.dumps(proxies.stats.requests[("connect", "timeout")]) == "1"
