"""``GET /metrics``: Prometheus text with the node's counters, moved by real traffic."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hubbub.api.metrics import TurnMetricsRecorder
from tests.support.server import running_server

pytestmark = pytest.mark.integration


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


async def test_metrics_count_connections_publishes_deliveries_and_errors() -> None:
    async with running_server() as server, aiohttp.ClientSession() as session:
        url = f"{server.http_url}/v1?key=pk_live_demo"
        async with session.ws_connect(url) as alice, session.ws_connect(url) as bob:
            for ws in (alice, bob):
                assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
            await bob.send_json({"type": "subscribe", "channel": "room", "requestId": "s"})
            assert json.loads((await bob.receive(timeout=5)).data)["type"] == "ack"
            assert json.loads((await bob.receive(timeout=5)).data)["type"] == "presence"
            await alice.send_json({"type": "publish", "channel": "room", "data": 1})
            assert json.loads((await bob.receive(timeout=5)).data)["type"] == "message"
            await alice.send_str("not json")
            assert json.loads((await alice.receive(timeout=5)).data)["code"] == "malformed_message"

            async with session.get(f"{server.http_url}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
        assert _value(text, "hubbub_connections") == 2
        assert _value(text, "hubbub_connections_opened_total") == 2
        assert _value(text, "hubbub_publications_total") == 1
        assert _value(text, "hubbub_deliveries_total") == 1
        assert 'hubbub_error_frames_total{code="malformed_message"} 1.0' in text


def test_turn_timings_become_histograms_in_seconds() -> None:
    registry = CollectorRegistry()
    record = TurnMetricsRecorder(registry)
    record({"timeToFirstTokenMs": 20, "totalTurnDurationMs": 1500, "ttsDurationMs": None})
    text = generate_latest(registry).decode()
    assert "hubbub_conversation_time_to_first_token_seconds_count 1.0" in text
    assert "hubbub_conversation_time_to_first_token_seconds_sum 0.02" in text
    assert "hubbub_conversation_turn_duration_seconds_count 1.0" in text
    # Missing figures (no speech in a text turn) are not observed as zero.
    assert "hubbub_conversation_tts_duration_seconds_count 0.0" in text


HISTORY_TOML = """
[server]
history_memory_bytes = 20000

[[apps]]
id = "demo"

[[apps.keys]]
id = "pk_live_demo"
kind = "publishable"
actions = ["publish", "subscribe", "presence"]

[[apps.channels]]
pattern = "**"
history_size = 2
"""


async def test_metrics_count_history_evictions_and_duplicates() -> None:
    async with running_server(HISTORY_TOML) as server, aiohttp.ClientSession() as session:
        url = f"{server.http_url}/v1?key=pk_live_demo"
        async with session.ws_connect(url) as alice:
            assert json.loads((await alice.receive(timeout=5)).data)["type"] == "welcome"
            # 3 into a history of 2 (one size eviction), a repeated messageId, then channels
            # enough to pass the 20 kB cap (whole channels evicted).
            for n in range(3):
                await alice.send_json(
                    {"type": "publish", "channel": "a", "data": n, "requestId": f"p{n}"}
                )
            for request_id in ("d1", "d2"):
                await alice.send_json(
                    {"type": "publish", "channel": "a", "data": 0, "requestId": request_id,
                     "messageId": "m"}
                )  # fmt: skip
            for n in range(40):
                await alice.send_json(
                    {"type": "publish", "channel": f"c{n}", "data": "x" * 400, "requestId": "q"}
                )
            replies = [json.loads((await alice.receive(timeout=5)).data) for _ in range(45)]
            assert all(r["type"] == "ack" for r in replies), replies
            assert replies[4]["duplicate"] is True
            async with session.get(f"{server.http_url}/metrics") as response:
                text = await response.text()
    assert _value(text, "hubbub_history_appended_total") == 44
    assert _value(text, "hubbub_publish_duplicates_total") == 1
    assert 'hubbub_history_evicted_total{reason="size"} 2.0' in text
    assert _value(text, "hubbub_history_channels_evicted_total") > 0
    assert 0 < _value(text, "hubbub_history_retained_bytes") <= 20000


async def test_metrics_count_the_event_loops_tasks_which_fall_back_after_clients_leave() -> None:
    async def tasks(session: aiohttp.ClientSession, url: str) -> float:
        async with session.get(f"{url}/metrics") as response:
            return _value(await response.text(), "hubbub_asyncio_tasks")

    async with running_server(None) as server, aiohttp.ClientSession() as session:  # demo: /ws
        idle = await tasks(session, server.http_url)
        assert idle >= 1  # at least the handler answering this scrape
        # /ws connections run on aiohttp, one handler task each (/v1's lean sockets have none).
        sockets = [await session.ws_connect(f"{server.http_url}/ws") for _ in range(5)]
        busy = await tasks(session, server.http_url)
        assert busy >= idle + 5  # each connection's handler is a task
        for ws in sockets:
            await ws.close()
        async with asyncio.timeout(10):
            while await tasks(session, server.http_url) > idle:
                await asyncio.sleep(0.05)  # the server's close has no event to await: poll
