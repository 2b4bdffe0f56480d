"""Hostile input on a real app (issue 11): deep JSON, absurd JWT claims, frame-size boundaries.

Each case gets its documented error as data (JSON bodies, error frames, close codes), and the
server goes on serving the next request or frame.
"""

from __future__ import annotations

import json
import time
import warnings

import aiohttp
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from hubbub.protocol.json_depth import TOO_DEEP_MESSAGE
from tests.api.conftest import API_TOML, api_client, frame_of_type, next_frame, serve, ws_connect

pytestmark = pytest.mark.integration

ACME_SECRET = "sk_secret_acme_0123456789abcdefghijkl"
DEEP = b"[" * 1000 + b"]" * 1000


def _token(**claims: object) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, ACME_SECRET, algorithm="HS256", headers={"kid": "sk_id_acme"})


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/tokens", b'{"peerId": "a", "metadata": {"x": ' + DEEP + b"}}"),
        ("/v1/tokens", b"[" * 20_000),
        ("/v1/channels/room/publish", b'{"data": ' + DEEP + b"}"),
        ("/v1/channels/room/publish", b'{"data": {"a": 1}, "from": ' + DEEP + b"}"),
    ],
)
async def test_deep_json_bodies_are_400_invalid_request(path: str, raw: bytes) -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("POST", path, raw=raw)
        assert (reply.status, reply.body["error"]) == (400, "invalid_request"), reply.body
        assert TOO_DEEP_MESSAGE in reply.body["message"]
        # Nothing else broke: the same endpoint answers a good body.
        good = {"peerId": "a"} if path == "/v1/tokens" else {"data": {"a": 1}}
        assert (await api.call("POST", path, good)).status == 200


async def test_deep_json_is_refused_after_the_rate_bucket_is_charged() -> None:
    config = API_TOML.replace("request_burst_per_key = 1000", "request_burst_per_key = 2")
    config = config.replace(
        "requests_per_second_per_key = 1000", "requests_per_second_per_key = 0.01"
    )
    async with serve(config) as served, api_client(served) as api:
        for _ in range(2):
            reply = await api.call("POST", "/v1/tokens", raw=b"[" * 5000)
            assert reply.status == 400
        reply = await api.call("POST", "/v1/tokens", raw=b"[" * 5000)
        assert (reply.status, reply.body["error"]) == (429, "rate_limited"), reply.body


@pytest.mark.parametrize("field", ["data", "since", "channel", "requestId"])
async def test_a_deep_realtime_frame_gets_malformed_message_and_the_socket_lives(
    field: str,
) -> None:
    async with serve() as served, aiohttp.ClientSession() as session:
        ws, _ = await ws_connect(session, served, "key=pk_live_acme")
        await ws.send_str(
            f'{{"type":"publish","channel":"room","requestId":"r1","{field}":{DEEP.decode()}}}'
        )
        error = await frame_of_type(ws, "error")
        assert error["code"] == "malformed_message"
        assert error["message"] == TOO_DEEP_MESSAGE
        await ws.send_json({"type": "publish", "channel": "room", "data": 1, "requestId": "r2"})
        assert (await frame_of_type(ws, "ack"))["requestId"] == "r2"


async def test_deep_realtime_frames_cost_rate_tokens() -> None:
    config = API_TOML.replace(
        "[[apps]]", "[limits]\nrate_burst = 3\nrate_per_second = 0.01\n\n[[apps]]", 1
    )
    async with serve(config) as served, aiohttp.ClientSession() as session:
        ws, _ = await ws_connect(session, served, "key=pk_live_acme")
        for _ in range(4):
            await ws.send_str(DEEP.decode())
        codes = []
        async for message in ws:
            codes.append(json.loads(message.data)["code"])
        assert codes == ["malformed_message"] * 3
        assert ws.close_code == 4011


@pytest.mark.parametrize(
    "exp", [10**400, -(10**400), 2**53, 1e308], ids=["1e400", "-1e400", "2^53", "1e308"]
)
async def test_an_absurd_exp_is_close_4001_not_http_500(exp: float) -> None:
    async with serve() as served, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{served.http_url}/v1?token={_token(sub='a', exp=exp)}")
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert ws.close_code == 4001
        # A sane token still connects.
        good = _token(sub="a", exp=int(time.time()) + 60)
        ws, welcome = await ws_connect(session, served, f"token={good}")
        assert welcome["peerId"] == "a"


SLACK = 1024
MAX = 65536


def _publish_of_size(total: int) -> str:
    head = '{"type":"publish","channel":"room","requestId":"big","data":"'
    tail = '"}'
    return head + "x" * (total - len(head) - len(tail)) + tail


@pytest.mark.parametrize("total", [MAX, MAX + SLACK - 1, MAX + SLACK])
async def test_frames_up_to_max_plus_the_documented_slack_are_accepted(total: int) -> None:
    async with serve() as served, aiohttp.ClientSession() as session:
        ws, _ = await ws_connect(session, served, "key=pk_live_acme")
        frame = _publish_of_size(total)
        assert len(frame.encode()) == total
        await ws.send_str(frame)
        assert await frame_of_type(ws, "ack") == {"type": "ack", "requestId": "big"}


async def test_one_byte_over_the_slack_closes_1009() -> None:
    async with serve() as served, aiohttp.ClientSession() as session:
        ws, _ = await ws_connect(session, served, "key=pk_live_acme")
        await ws.send_str(_publish_of_size(MAX + SLACK + 1))
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert ws.close_code == 1009
        # Another connection is unaffected.
        other, _ = await ws_connect(session, served, "key=pk_live_acme")
        await other.send_json({"type": "ping"})
        assert await next_frame(other) == {"type": "pong"}
