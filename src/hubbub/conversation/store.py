"""Persistence of conversations, their events and variables (SQLAlchemy Core, async).

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for ``postgresql+asyncpg://`` URLs: one code
path for both. Writes are queued and applied in batches by one writer task, so a turn never
waits for the disk; :meth:`ConversationStore.flush` waits until everything queued is written
(a resume does, so it reads what the previous session wrote).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

metadata = sa.MetaData()

conversations = sa.Table(
    "hubbub_conversations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(200), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("agent_id", sa.String(200)),
    sa.Column("stage_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

events = sa.Table(
    "hubbub_conversation_events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(64), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("input_turn_id", sa.String(64)),
    sa.Column("output_turn_id", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
)

variables = sa.Table(
    "hubbub_conversation_variables",
    metadata,
    sa.Column("conversation_id", sa.String(64), primary_key=True),
    sa.Column("stage_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON),
)


@dataclass(slots=True)
class ConversationRecord:
    id: str
    project_id: str
    user_id: str
    agent_id: str | None
    stage_id: str
    status: str
    timezone: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    conversation_id: str
    seq: int
    event_type: str
    data: dict[str, Any]
    input_turn_id: str | None
    output_turn_id: str | None
    created_at: float


@dataclass(slots=True)
class StoredConversation:
    record: ConversationRecord
    variables: dict[str, dict[str, Any]]  # stage id -> name -> value
    events: list[EventRecord]


_Write = Callable[[AsyncConnection], Awaitable[None]]


class ConversationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pending: list[_Write] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> ConversationStore:
        return cls(create_async_engine(url))

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        self._writer = asyncio.create_task(self._write_loop(), name="conversation-store")

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._engine.dispose()

    # --- queued writes ---------------------------------------------------------------------

    def _enqueue(self, write: _Write) -> None:
        self._pending.append(write)
        self._idle.clear()
        self._wakeup.set()

    async def flush(self) -> None:
        await self._idle.wait()

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            try:
                async with self._engine.begin() as conn:
                    for write in batch:
                        await write(conn)
            except Exception:  # the store must outlive one bad batch; the log keeps the reason
                log.exception("conversation store: a batch of %d writes failed", len(batch))
            if not self._pending:
                self._idle.set()

    def save_conversation(self, record: ConversationRecord) -> None:
        values = {
            "project_id": record.project_id,
            "user_id": record.user_id,
            "agent_id": record.agent_id,
            "stage_id": record.stage_id,
            "status": record.status,
            "timezone": record.timezone,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }

        async def write(conn: AsyncConnection) -> None:
            updated = await conn.execute(
                conversations.update().where(conversations.c.id == record.id).values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(conversations.insert().values(id=record.id, **values))

        self._enqueue(write)

    def append_event(self, event: EventRecord) -> None:
        row = {
            "id": event.id,
            "conversation_id": event.conversation_id,
            "seq": event.seq,
            "event_type": event.event_type,
            "data": event.data,
            "input_turn_id": event.input_turn_id,
            "output_turn_id": event.output_turn_id,
            "created_at": event.created_at,
        }

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(events.insert().values(**row))

        self._enqueue(write)

    def save_variables(self, conversation_id: str, stage_id: str, values: dict[str, Any]) -> None:
        rows = [
            {"conversation_id": conversation_id, "stage_id": stage_id, "name": k, "value": v}
            for k, v in values.items()
        ]

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                variables.delete().where(
                    (variables.c.conversation_id == conversation_id)
                    & (variables.c.stage_id == stage_id)
                )
            )
            if rows:
                await conn.execute(variables.insert(), rows)

        self._enqueue(write)

    # --- reads -----------------------------------------------------------------------------

    async def load(self, conversation_id: str) -> StoredConversation | None:
        await self.flush()
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(conversations).where(conversations.c.id == conversation_id)
                )
            ).first()
            if found is None:
                return None
            record = ConversationRecord(**found._mapping)
            stage_vars: dict[str, dict[str, Any]] = {}
            var_rows = await conn.execute(
                sa.select(variables).where(variables.c.conversation_id == conversation_id)
            )
            for row in var_rows:
                stage_vars.setdefault(row.stage_id, {})[row.name] = row.value
            event_rows = await conn.execute(
                sa.select(events)
                .where(events.c.conversation_id == conversation_id)
                .order_by(events.c.seq)
            )
            history = [EventRecord(**row._mapping) for row in event_rows]
        return StoredConversation(record, stage_vars, history)
