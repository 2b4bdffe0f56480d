"""Structural fuzzing of REST bodies against a real server (issue 11): whatever the body, the
answer is JSON with a documented status and error code, never a 500 or a traceback, and the
server keeps answering. The server runs in a thread of its own so Hypothesis drives it
synchronously over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import SK, serve

pytestmark = pytest.mark.integration

DOCUMENTED = {
    200: {None},
    400: {"invalid_request", "channel_reserved", "invalid_channel"},
    403: {"channel_not_authorized", "action_not_permitted"},
    413: {"invalid_request"},
}
PATHS = ["/v1/tokens", "/v1/channels/room/publish"]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()
    url: list[str] = []

    async def run() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with serve() as served:
            url.append(served.http_url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(20), "the server did not start"
    yield url[0]
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(20)


def post(base_url: str, path: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        base_url + path, data=body, method="POST", headers={"Authorization": SK}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        assert error.headers.get_content_type() == "application/json", error.read()[:200]
        return error.code, json.loads(error.read())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
TOKEN_FIELDS = ["peerId", "channels", "permissions", "expiresInSec", "metadata", "peerMetadata"]
PUBLISH_FIELDS = ["data", "from", "peerMetadata", "messageId"]
bodies = st.dictionaries(
    st.sampled_from(TOKEN_FIELDS + PUBLISH_FIELDS + ["other"]),
    json_values
    | st.sampled_from(["alice", "room/*", "publish", "_internal/x", "**", 60, 86401])
    | st.lists(st.sampled_from(["room/*", "publish", "subscribe", "send", "x", "**"]), max_size=5),
    max_size=6,
)
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _assert_documented(status: int, body: Any) -> None:
    assert status in DOCUMENTED, (status, body)
    if status == 200:
        assert isinstance(body, dict) and "error" not in body
    else:
        assert body["error"] in DOCUMENTED[status], body
        assert isinstance(body["message"], str) and body["message"]


@given(st.sampled_from(PATHS), bodies)
@SETTINGS
def test_structured_bodies_get_documented_answers(
    base_url: str, path: str, body: dict[str, Any]
) -> None:
    status, answer = post(base_url, path, json.dumps(body).encode())
    _assert_documented(status, answer)


@given(st.sampled_from(PATHS), bodies, st.data())
@SETTINGS
def test_mutated_bodies_get_documented_answers(
    base_url: str, path: str, body: dict[str, Any], data: st.DataObject
) -> None:
    raw = bytearray(json.dumps(body).encode())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.sampled_from([b"[", b"{", b'"', b"\\", b"\xff", b"," * 3]))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    status, answer = post(base_url, path, bytes(raw))
    _assert_documented(status, answer)


def test_the_server_still_answers_after_the_fuzzing(base_url: str) -> None:
    status, answer = post(base_url, "/v1/tokens", b'{"peerId": "still-here"}')
    assert status == 200 and isinstance(answer["token"], str)
