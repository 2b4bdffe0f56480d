"""Network-free doubles for driving a :class:`~hubbub.core.node.Node` in unit tests.

* :class:`FakeSink` records what the node queues for one connection, honouring the
  ``ConnectionSink`` contract (pushes after ``close`` are dropped, and kept aside for checks).
* :class:`FakeClock` + :class:`FakeScheduler` let tests move time by hand.
* :class:`Hub` wires a node to the in-memory broker and stores, and opens connections with
  whatever principal a test needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hubbub.brokers.memory import MemoryBroker, MemoryPresenceStore, MemoryUsageStore
from hubbub.core.authorizer import NO_AUTHORIZER, Authorizer
from hubbub.core.broker import AppQuota, Broker, PresenceStore, UsageStore
from hubbub.core.connection import Connection
from hubbub.core.events import NO_EVENTS, EventSink
from hubbub.core.history import HistoryStore, Retention, RetentionRule, RetentionRules
from hubbub.core.node import Node, NodeLimits
from hubbub.core.outbound import OutFrame
from hubbub.core.principal import ChannelScope, Principal
from hubbub.protocol.patterns import compile_pattern
from tests.support.clock import FakeClock, FakeScheduler

ALL_ACTIONS = frozenset({"publish", "subscribe", "presence", "send"})


@dataclass(frozen=True, slots=True)
class Event:
    """One thing the node did to a sink: ``push``, ``pause`` (push_after_pause) or ``close``."""

    kind: str
    frame: dict[str, Any] | None = None
    out: OutFrame | None = None
    code: int | None = None
    reason: str | None = None


class FakeSink:
    def __init__(self, label: str = "", journal: list[tuple[str, Event]] | None = None) -> None:
        # The journal, shared by every sink of a hub, shows the order across connections.
        self.label = label
        self.journal = journal if journal is not None else []
        self.events: list[Event] = []
        self.dropped: list[OutFrame] = []
        self.closed = False
        self._read = 0

    def _record(self, kind: str, frame: OutFrame) -> None:
        if self.closed:
            self.dropped.append(frame)
            return
        event = Event(kind, json.loads(frame.payload), frame)
        self.events.append(event)
        self.journal.append((self.label, event))

    def push(self, frame: OutFrame) -> None:
        self._record("push", frame)

    def push_after_pause(self, frame: OutFrame) -> None:
        self._record("pause", frame)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            event = Event("close", code=code, reason=reason)
            self.events.append(event)
            self.journal.append((self.label, event))

    # --- reading helpers -------------------------------------------------------------------

    def new_events(self) -> list[Event]:
        """Events since the previous call (a cursor, so tests read a conversation in turns)."""
        fresh = self.events[self._read :]
        self._read = len(self.events)
        return fresh

    def new_frames(self) -> list[dict[str, Any]]:
        return [e.frame for e in self.new_events() if e.frame is not None]

    def frames(self) -> list[dict[str, Any]]:
        return [e.frame for e in self.events if e.frame is not None]

    def close_event(self) -> Event | None:
        return next((e for e in self.events if e.kind == "close"), None)


@dataclass(eq=False)
class Client:
    """One open connection plus its sink, with helpers that speak the wire format."""

    hub: Hub
    conn: Connection
    sink: FakeSink

    @property
    def peer_id(self) -> str:
        return self.conn.peer_id

    async def send(self, frame: Mapping[str, Any] | str | bytes) -> None:
        payload = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        await self.hub.node.handle_frame(self.conn, payload)

    async def subscribe(
        self, channel: str, request_id: str = "s", include_sender_metadata: bool | None = None
    ) -> None:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel, "requestId": request_id}
        if include_sender_metadata is not None:
            frame["includeSenderMetadata"] = include_sender_metadata
        await self.send(frame)

    async def unsubscribe(self, channel: str, request_id: str = "u") -> None:
        await self.send({"type": "unsubscribe", "channel": channel, "requestId": request_id})

    async def publish(self, channel: str, data: Any = "hi", request_id: str = "p") -> None:
        await self.send(
            {"type": "publish", "channel": channel, "data": data, "requestId": request_id}
        )

    async def direct(self, to: str, data: Any = "hi", request_id: str = "d") -> None:
        await self.send({"type": "send", "to": to, "data": data, "requestId": request_id})

    async def close(self) -> None:
        await self.hub.node.close_connection(self.conn)

    def new_frames(self) -> list[dict[str, Any]]:
        return self.sink.new_frames()

    def new_events(self) -> list[Event]:
        return self.sink.new_events()


@dataclass(eq=False)
class Hub:
    limits: NodeLimits = field(default_factory=NodeLimits)
    quotas: Mapping[str, AppQuota] = field(default_factory=dict)
    broker: Broker = field(default_factory=MemoryBroker)
    presence: PresenceStore = field(default_factory=MemoryPresenceStore)
    usage: UsageStore = field(default_factory=MemoryUsageStore)
    clock: FakeClock = field(default_factory=FakeClock)
    events: EventSink = NO_EVENTS
    authorizer: Authorizer = NO_AUTHORIZER
    # app -> [(pattern, history_size, history_ttl_s)], first match wins ([[apps.channels]]).
    channels: Mapping[str, list[tuple[str, int, float]]] = field(default_factory=dict)
    history: HistoryStore | None = None
    dedup_window_s: float = 120.0

    def __post_init__(self) -> None:
        self.scheduler = FakeScheduler(self.clock)
        if self.history is None and isinstance(self.broker, MemoryBroker):
            self.history = self.broker.history
        rules = RetentionRules(
            {
                app: [
                    RetentionRule(compile_pattern(p), Retention(size, ttl)) for p, size, ttl in rows
                ]
                for app, rows in self.channels.items()
            }
        )
        self.node = Node(
            node_id="n1",
            broker=self.broker,
            presence=self.presence,
            usage=self.usage,
            limits=self.limits,
            quotas=self.quotas,
            clock=self.clock,
            scheduler=self.scheduler,
            events=self.events,
            authorizer=self.authorizer,
            history=self.history,
            retention=rules,
            dedup_window_s=self.dedup_window_s,
        )
        self._anonymous = 0
        self.journal: list[tuple[str, Event]] = []

    async def start(self) -> Hub:
        await self.node.start()
        return self

    async def try_connect(
        self,
        peer_id: str | None = None,
        *,
        app_id: str = "app",
        actions: Iterable[str] = ALL_ACTIONS,
        patterns: Iterable[str] = ("**",),
        token_patterns: Iterable[str] | None = None,
        expires_at: int | None = None,
        welcome_metadata: bytes | None = None,
        peer_metadata: bytes | None = None,
        remote_addr: str | None = None,
        key_id: str = "k",
    ) -> tuple[Client | None, FakeSink]:
        if peer_id is None:
            self._anonymous += 1
            peer_id = f"peer-{self._anonymous}"
        layers = [tuple(compile_pattern(p) for p in patterns)]
        if token_patterns is not None:
            layers.append(tuple(compile_pattern(p) for p in token_patterns))
        principal = Principal(
            app_id=app_id,
            peer_id=peer_id,
            key_id=key_id,
            actions=frozenset(actions),
            scope=ChannelScope(tuple(layers)),
            expires_at=expires_at,
            welcome_metadata=welcome_metadata,
            peer_metadata=peer_metadata,
        )
        sink = FakeSink(peer_id, self.journal)
        conn = await self.node.open_connection(principal, sink, remote_addr=remote_addr)
        return (Client(self, conn, sink) if conn is not None else None), sink

    async def connect(self, peer_id: str | None = None, **kwargs: Any) -> Client:
        """Open a connection and consume its welcome."""
        client, sink = await self.try_connect(peer_id, **kwargs)
        assert client is not None, sink.events
        welcome = client.new_frames()
        assert [f["type"] for f in welcome] == ["welcome"]
        return client
