"""Webhooks of a cluster: three nodes on one Redis (then two shards) send each lifecycle event
once, in a valid order per channel, however joins and leaves interleave across nodes."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from metered_realtime import Presence

from tests.cluster.conftest import Inbox, demo_token, running_cluster, sdk_client
from tests.support.backend import Backend, Received, running_backend
from tests.support.redis import SHARED_URL, private_redis
from tests.support.server import DEMO_APP_TOML, ServerProcess

pytestmark = pytest.mark.integration

SECRET = "whsec_cluster"
LIFECYCLE = ("channel_occupied", "channel_vacated", "member_added", "member_removed")


def apps_toml(backend: Backend) -> str:
    events = ", ".join(f'"{name}"' for name in LIFECYCLE)
    return (
        DEMO_APP_TOML
        + f"""
[[apps.webhooks]]
name = "backend"
url = "{backend.url("/hooks")}"
secret = "{SECRET}"
events = [{events}]
retry_initial_ms = 50
retry_max_ms = 200
"""
    )


def events_of(requests: list[Received]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    for request in requests:
        assert request.signed_with(SECRET)
        webhook_id = request.headers["X-Hubbub-Webhook-Id"]
        if webhook_id not in seen:
            seen.add(webhook_id)
            events.extend(request.json["events"])
    return events


def by_channel(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    channels: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        channels.setdefault(event["channel"], []).append(event)
    return channels


def check_lifecycle(channel: str, events: list[dict[str, Any]]) -> None:
    """Each transition once, in an order that can have happened: never vacated while a
    member is present, never a member removed that was not added."""
    occupied = False
    present: set[str] = set()
    for event in events:
        name, user = event["name"], event.get("user_id")
        where = f"{channel}: {name} {user} in {[(e['name'], e.get('user_id')) for e in events]}"
        if name == "channel_occupied":
            assert not occupied, where
            occupied = True
        elif name == "member_added":
            assert occupied and user not in present, where
            present.add(user)
        elif name == "member_removed":
            assert user in present, where
            present.discard(user)
        elif name == "channel_vacated":
            assert occupied and not present, where
            occupied = False
    assert not occupied and not present, f"{channel} ended occupied: {events}"


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as running:
        yield running


@contextlib.asynccontextmanager
async def cluster_for(
    backend: Backend, shards: int, presence_ttl_s: float = 3.0
) -> AsyncIterator[list[ServerProcess]]:
    async with contextlib.AsyncExitStack() as stack:
        url: str | list[str] = SHARED_URL
        if shards == 2:
            url = [
                (await stack.enter_async_context(private_redis())).url,
                (await stack.enter_async_context(private_redis())).url,
            ]
        nodes = await stack.enter_async_context(
            running_cluster(url, presence_ttl_s=presence_ttl_s, apps_toml=apps_toml(backend))
        )
        yield nodes


async def churn(inbox: Inbox, channels: list[str], rounds: int, rng: random.Random) -> None:
    for _ in range(rounds):
        picked = rng.sample(channels, k=rng.randint(1, len(channels)))
        for channel in picked:
            await inbox.client.subscribe(channel)
            await asyncio.sleep(rng.random() / 100)
        for channel in rng.sample(picked, k=len(picked)):
            await inbox.client.unsubscribe(channel)
            await asyncio.sleep(rng.random() / 100)


@pytest.mark.parametrize("shards", [1, 2], ids=["one-redis", "2-shards"])
async def test_concurrent_joins_and_leaves_across_nodes_give_each_event_once(
    backend: Backend, shards: int
) -> None:
    channels = [f"room-{n}" for n in range(3)]
    rng = random.Random(13)
    async with cluster_for(backend, shards) as nodes, contextlib.AsyncExitStack() as stack:
        anchor = await stack.enter_async_context(sdk_client(nodes[0], token=demo_token("anchor")))
        await anchor.client.subscribe("room-0")  # present all along: room-0 is never vacated
        await anchor.next(Presence)
        # Six peers; "twin-*" have a connection on two nodes each (decision 5).
        clients: list[Inbox] = []
        for n in range(6):
            peer = f"twin-{n}" if n < 2 else f"peer-{n}"
            clients.append(
                await stack.enter_async_context(sdk_client(nodes[n % 3], token=demo_token(peer)))
            )
            if n < 2:
                clients.append(
                    await stack.enter_async_context(
                        sdk_client(nodes[(n + 1) % 3], token=demo_token(peer))
                    )
                )
        await asyncio.gather(*(churn(c, channels, 4, random.Random(rng.random())) for c in clients))

        def settled(requests: list[Received]) -> bool:
            channels_now = by_channel(events_of(requests))
            rooms = [channels_now.get(c, []) for c in channels[1:]]
            return all(r and r[-1]["name"] == "channel_vacated" for r in rooms) and sum(
                1 for e in channels_now.get("room-0", []) if e["name"] == "member_removed"
            ) == sum(
                1
                for e in channels_now.get("room-0", [])
                if e["name"] == "member_added" and e["user_id"] != "anchor"
            )

        await backend.wait_for(settled, timeout_s=30)
        room0 = by_channel(events_of(backend.requests))["room-0"]
        assert [e["name"] for e in room0[:2]] == ["channel_occupied", "member_added"]
        assert not any(e["name"] == "channel_vacated" for e in room0)
        assert not any(e["name"] == "member_removed" and e["user_id"] == "anchor" for e in room0)
        await stack.aclose()  # everyone leaves
        await backend.wait_for(
            lambda rs: by_channel(events_of(rs))["room-0"][-1]["name"] == "channel_vacated"
        )
    # Every channel's story is complete and consistent.
    events = events_of(backend.requests)
    for channel, story in by_channel(events).items():
        check_lifecycle(channel, story)
    added = Counter(e["user_id"] for e in events if e["name"] == "member_added")
    assert set(added) == {"anchor", "twin-0", "twin-1", "peer-2", "peer-3", "peer-4", "peer-5"}


@pytest.mark.parametrize("shards", [1, 2], ids=["one-redis", "2-shards"])
async def test_a_killed_nodes_members_are_removed_once_after_the_ttl(
    backend: Backend, shards: int
) -> None:
    async with (
        cluster_for(backend, shards, presence_ttl_s=3.0) as (a, b, c),
        sdk_client(a, token=demo_token("survivor")) as survivor,
        sdk_client(c, token=demo_token("doomed")) as doomed,
        sdk_client(c, token=demo_token("twin")) as twin_on_c,
        sdk_client(b, token=demo_token("twin")) as twin_on_b,
    ):
        await survivor.client.subscribe("shared")
        for client in (doomed, twin_on_c):
            await client.client.subscribe("shared")
            await client.client.subscribe("only-c")
        await twin_on_b.client.subscribe("shared")
        await survivor.next(Presence, lambda p: "twin" in [e.peer_id for e in p.joined])

        def joined(requests: list[Received]) -> bool:
            names = [(e["name"], e["channel"]) for e in events_of(requests)]
            return names.count(("member_added", "shared")) == 3 and (
                names.count(("member_added", "only-c")) == 2
            )

        await backend.wait_for(joined)
        before = len(events_of(backend.requests))
        c.process.kill()  # kill -9: no goodbye, its presence stays until the TTL reaps it
        await c.process.wait()

        def reaped(requests: list[Received]) -> bool:
            later = events_of(requests)[before:]
            return ("channel_vacated", "only-c") in [(e["name"], e["channel"]) for e in later]

        await backend.wait_for(reaped, timeout_s=15)
        later = sorted(
            (e["name"], e["channel"], e.get("user_id", ""))
            for e in events_of(backend.requests)[before:]
        )
        assert later == [
            ("channel_vacated", "only-c", ""),
            ("member_removed", "only-c", "doomed"),
            ("member_removed", "only-c", "twin"),
            ("member_removed", "shared", "doomed"),
            # twin is still in "shared" through node b: no member_removed for it there
        ]
        # (Two survivors reaping at once decide each removal once: tests/brokers covers it.)
        await survivor.client.close()
        await twin_on_b.client.close()

        def shared_vacated(requests: list[Received]) -> bool:
            story = by_channel(events_of(requests))["shared"]
            return story[-1]["name"] == "channel_vacated"

        await backend.wait_for(shared_vacated)
        for channel, story in by_channel(events_of(backend.requests)).items():
            check_lifecycle(channel, story)
