"""The listings of the REST control plane: what one node answers, and how answers combine.

A listing asks every node through the broker (:meth:`Broker.query_nodes`); each node answers
from its own connections with at most ``limit`` entries *in the listing's order*, so merging
the answers and keeping the first ``limit`` gives exactly the cluster-wide first page.

* connections: ordered by peer id, then by when they connected;
* channels: ordered by name; a channel is listed while it has subscribers on some node or was
  published to recently. ``subscribers`` counts connections subscribed to exactly that name
  (wildcard subscriptions show up under their pattern in the connection listing), ``peers``
  comes from the presence store, and ``messagesPerSecond`` is the sum of every node's rate of
  publications (each publication is counted once, on the node it was published from).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from hubbub.core.activity import ChannelActivity
from hubbub.core.broker import ChannelInfo, ConnectionInfo, NodeAnswer, NodeQuery
from hubbub.core.connection import Connection
from hubbub.core.presence import PresenceStore
from hubbub.core.routes import LocalRoutes
from hubbub.protocol.patterns import compile_pattern

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    channel: str
    subscribers: int
    peers: int
    messages_per_second: float


def _connection_key(info: ConnectionInfo) -> tuple[str, float, str]:
    return (info.peer_id, info.connected_at, info.node)


def local_answer(
    node_id: str,
    query: NodeQuery,
    connections: Iterable[Connection],
    routes: LocalRoutes,
    activity: ChannelActivity,
) -> NodeAnswer:
    app_id = query.app_id
    if query.subject == "connections":
        found = [
            ConnectionInfo(
                peer_id=conn.peer_id,
                channels=tuple(conn.subscriptions),
                remote_addr=conn.remote_addr,
                connected_at=conn.connected_at,
                node=node_id,
                frames_in=conn.frames_in,
                frames_out=conn.frames_out,
            )
            for conn in connections
            if conn.app_id == app_id
            and not (conn.closed or conn.closing)
            and (query.peer_id is None or conn.peer_id == query.peer_id)
            and (query.channel is None or query.channel in conn.subscriptions)
        ]
        found.sort(key=_connection_key)
        return NodeAnswer(node_id, connections=tuple(found[: query.limit]))
    counts = routes.channel_counts(app_id)
    if query.subject == "nodes":
        open_count = sum(
            1 for c in connections if c.app_id == app_id and not (c.closed or c.closing)
        )
        return NodeAnswer(node_id, connection_count=open_count, channel_count=len(counts))
    prefix = query.prefix
    rates = dict(activity.rates(app_id, prefix))
    names = {name for name in counts if prefix is None or name.startswith(prefix)}
    names.update(rates)
    if query.patterns:
        scope = [compile_pattern(text) for text in query.patterns]
        names = {name for name in names if any(p.matches(name) for p in scope)}
    channels = tuple(
        ChannelInfo(name, counts.get(name, 0), rates.get(name, 0.0))
        for name in sorted(names)[: query.limit]
    )
    return NodeAnswer(node_id, channels=channels)


def merge_connections(answers: Iterable[NodeAnswer], limit: int) -> list[ConnectionInfo]:
    merged = [info for answer in answers for info in answer.connections]
    merged.sort(key=_connection_key)
    return merged[:limit]


def merge_channels(answers: Iterable[NodeAnswer], limit: int) -> list[ChannelInfo]:
    totals: dict[str, tuple[int, float]] = {}
    for answer in answers:
        for info in answer.channels:
            subscribers, rate = totals.get(info.channel, (0, 0.0))
            totals[info.channel] = (
                subscribers + info.subscribers,
                rate + info.messages_per_second,
            )
    return [
        ChannelInfo(name, subscribers, rate)
        for name, (subscribers, rate) in sorted(totals.items())[:limit]
    ]


async def with_peer_counts(
    channels: list[ChannelInfo], app_id: str, presence: PresenceStore
) -> list[ChannelSummary]:
    """Each channel's present peers from the presence store (none without subscribers)."""

    async def peers(info: ChannelInfo) -> int:
        return await presence.count(app_id, info.channel) if info.subscribers else 0

    counted = await asyncio.gather(*(peers(info) for info in channels))
    return [
        ChannelSummary(info.channel, info.subscribers, count, info.messages_per_second)
        for info, count in zip(channels, counted, strict=True)
    ]
