"""A node's link to Redis with 300 ms delay and 20 % packet loss (issue 11): in a network
namespace this test creates (veth pair, nftables loss, a delay relay; no netem here).

The documented outcome: the node on the bad link keeps serving, slower; every publish it
takes is answered (ack or backend_error, never silence), acknowledged ones reach the other
node once, and once the link heals its publishes are acknowledged within a second again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.cluster.conftest import cluster_toml
from tests.support.lossy_link import link_unavailable, lossy_link
from tests.support.redis import PrivateRedis, free_port
from tests.support.server import DEMO_APP_TOML, running_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(link_unavailable() is not None, reason=str(link_unavailable())),
]


async def test_a_slow_lossy_link_to_redis_slows_the_node_but_loses_nothing(tmp_path: Path) -> None:
    redis = PrivateRedis(free_port(), tmp_path)
    async with lossy_link(redis.port) as link:
        await redis.start("--bind", f"127.0.0.1 {link.host_ip}", "--protected-mode", "no")
        try:

            def toml(url: str) -> str:
                return cluster_toml(url, "lossy", presence_ttl_s=10, apps_toml=DEMO_APP_TOML)

            async with (
                running_server(toml(link.url)) as a,
                running_server(toml(redis.url)) as b,
                aiohttp.ClientSession() as session,
            ):
                publisher = await session.ws_connect(f"{a.http_url}/v1?key=pk_live_demo")
                subscriber = await session.ws_connect(f"{b.http_url}/v1?key=pk_live_demo")
                for ws in (publisher, subscriber):
                    assert json.loads((await ws.receive(timeout=10)).data)["type"] == "welcome"
                await subscriber.send_json({"type": "subscribe", "channel": "c", "requestId": "s"})
                assert json.loads((await subscriber.receive(timeout=10)).data)["type"] == "ack"
                answers: dict[int, tuple[str, float]] = {}
                delivered: Counter[int] = Counter()

                async def read_answers() -> None:
                    async for msg in publisher:
                        frame = json.loads(msg.data)
                        outcome = "ack" if frame["type"] == "ack" else frame["code"]
                        answers[int(frame["requestId"])] = (outcome, time.monotonic())

                async def read_deliveries() -> None:
                    async for msg in subscriber:
                        frame = json.loads(msg.data)
                        if frame["type"] == "message":
                            delivered[frame["data"]] += 1

                readers = [
                    asyncio.create_task(read_answers()),
                    asyncio.create_task(read_deliveries()),
                ]
                sent: dict[int, float] = {}

                async def publish(seq: int) -> None:
                    sent[seq] = time.monotonic()
                    frame = {"type": "publish", "channel": "c", "data": seq, "requestId": str(seq)}
                    await publisher.send_json(frame)

                await link.set(bad=True)
                for seq in range(20):  # 8 s on the bad link
                    await publish(seq)
                    await asyncio.sleep(0.4)  # pacing the load
                await link.set(bad=False)
                healed_at = time.monotonic()
                async with asyncio.timeout(20):
                    while len(answers) < 20:
                        await asyncio.sleep(0.05)  # answers arrive on their own: poll
                for seq in range(20, 25):
                    await publish(seq)
                    await asyncio.sleep(0.1)  # pacing
                async with asyncio.timeout(10):
                    acked = lambda: {s for s, (o, _) in answers.items() if o == "ack"}  # noqa: E731
                    while len(answers) < 25 or not all(delivered[s] for s in acked()):
                        await asyncio.sleep(0.05)  # poll the tallies
                outcomes = Counter(o for o, _ in answers.values())
                assert set(outcomes) <= {"ack", "backend_error"}, outcomes
                slow = [answers[s][1] - sent[s] for s in range(20) if answers[s][0] == "ack"]
                assert slow and max(slow) >= 0.3  # the delay was real
                assert all(delivered[s] == 1 for s in acked())
                # A backend_error may still have been published (the answer was what timed out).
                assert set(delivered) <= set(sent)
                # Healed: acknowledged within a second again.
                assert all(answers[s][0] == "ack" for s in range(20, 25))
                assert all(answers[s][1] - sent[s] < 1.0 for s in range(20, 25))
                assert healed_at < min(sent[s] for s in range(20, 25))
                for reader in readers:
                    reader.cancel()
                for node in (a, b):
                    assert node.process.returncode is None
                    assert "Traceback" not in node.log_text()
        finally:
            await redis.stop()
