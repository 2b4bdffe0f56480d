"""``GET /metrics``: Prometheus text with the node's counters, moved by real traffic."""

from __future__ import annotations

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
