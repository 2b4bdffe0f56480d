"""Persistence of conversations, their events and variables (SQLAlchemy Core, async).

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for ``postgresql+asyncpg://`` URLs: one code
path for both. Writes are queued and applied in batches by one writer task, so a turn never
waits for the disk; :meth:`ConversationStore.flush` waits until everything queued is written
(a resume does, so it reads what the previous session wrote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, replace
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
    # The listing reads newest first (GET /v1/conversations).
    sa.Index("ix_hubbub_conversations_created", "created_at", "id"),
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


_UPDATE_CONVERSATION = (
    conversations.update()
    .where(conversations.c.id == sa.bindparam("key"))
    .values(
        {
            column.name: sa.bindparam(column.name)
            for column in conversations.columns
            if column.name != "id"
        }
    )
)


def _record_row(record: ConversationRecord, *, with_id: bool = True) -> dict[str, Any]:
    return {
        column.name: getattr(record, column.name)
        for column in conversations.columns
        if with_id or column.name != "id"
    }


class ConversationStore:
    def __init__(self, engine: AsyncEngine, *, batch_delay_s: float = 0.1) -> None:
        self._engine = engine
        # Writes wait this long to share a transaction with others: a turn makes several.
        self._batch_delay_s = batch_delay_s
        self._events: list[dict[str, Any]] = []
        self._records: dict[str, ConversationRecord] = {}
        self._variables: dict[tuple[str, str], dict[str, Any]] = {}
        self._known: set[str] = set()  # conversation rows that exist already
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> ConversationStore:
        return cls(create_async_engine(url))

    async def start(self) -> None:
        await self._create_tables()
        self._writer = asyncio.create_task(self._write_loop(), name="conversation-store")

    async def _create_tables(self, attempts: int = 5) -> None:
        """Create what is missing. Nodes of a cluster starting at once on a fresh database
        race to create the same tables: the losers' CREATE fails, and their next look finds
        the tables there."""
        for attempt in range(attempts):
            try:
                async with self._engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
                return
            except sa.exc.DBAPIError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._engine.dispose()

    # --- queued writes ---------------------------------------------------------------------

    def _wake(self) -> None:
        self._idle.clear()
        self._wakeup.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._idle.wait()

    def _has_pending(self) -> bool:
        return bool(self._events or self._records or self._variables)

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._batch_delay_s:
                await asyncio.sleep(self._batch_delay_s)
            self._wakeup.clear()
            events_batch, self._events = self._events, []
            records, self._records = self._records, {}
            stage_vars, self._variables = self._variables, {}
            try:
                async with self._engine.begin() as conn:
                    await self._write(conn, events_batch, records, stage_vars)
            except Exception:  # the store must outlive one bad batch; the log keeps the reason
                log.exception("conversation store: a batch of writes failed")
            if not self._has_pending():
                self._idle.set()

    async def _write(
        self,
        conn: AsyncConnection,
        events_batch: list[dict[str, Any]],
        records: dict[str, ConversationRecord],
        stage_vars: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        new_rows = [_record_row(r) for r in records.values() if r.id not in self._known]
        new_ids = {row["id"] for row in new_rows}
        if new_rows:
            await conn.execute(conversations.insert(), new_rows)
            self._known.update(new_ids)
        updates = [
            {"key": r.id, **_record_row(r, with_id=False)}
            for r in records.values()
            if r.id not in new_ids
        ]
        if updates:
            await conn.execute(_UPDATE_CONVERSATION, updates)
        if events_batch:
            await conn.execute(events.insert(), events_batch)
        for (conversation_id, stage_id), values in stage_vars.items():
            await conn.execute(
                variables.delete().where(
                    (variables.c.conversation_id == conversation_id)
                    & (variables.c.stage_id == stage_id)
                )
            )
            if values:
                await conn.execute(
                    variables.insert(),
                    [
                        {
                            "conversation_id": conversation_id,
                            "stage_id": stage_id,
                            "name": name,
                            "value": value,
                        }
                        for name, value in values.items()
                    ],
                )

    def save_conversation(self, record: ConversationRecord) -> None:
        self._records[record.id] = replace(record)
        self._wake()

    def append_event(self, event: EventRecord) -> None:
        # Not dataclasses.asdict: it deep-copies the event data, and events are immutable.
        self._events.append(
            {
                "id": event.id,
                "conversation_id": event.conversation_id,
                "seq": event.seq,
                "event_type": event.event_type,
                "data": event.data,
                "input_turn_id": event.input_turn_id,
                "output_turn_id": event.output_turn_id,
                "created_at": event.created_at,
            }
        )
        self._wake()

    def save_variables(self, conversation_id: str, stage_id: str, values: dict[str, Any]) -> None:
        self._variables[(conversation_id, stage_id)] = dict(values)
        self._wake()

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
            self._known.add(record.id)
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

    # --- listings (the REST control plane; the console) ----------------------------------
    #
    # These read what is written; they wait for queued writes only briefly, so a listing is
    # never held up behind a busy writer (the live state comes from the running
    # conversations anyway).

    async def _mostly_flushed(self, timeout_s: float = 1.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush()

    async def record(self, conversation_id: str) -> ConversationRecord | None:
        await self._mostly_flushed()
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(conversations).where(conversations.c.id == conversation_id)
                )
            ).first()
        return None if found is None else ConversationRecord(**found._mapping)

    async def list_records(
        self,
        *,
        project_ids: Collection[str] | None,
        statuses: Collection[str] | None,
        limit: int,
        before: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        """Newest first; ``project_ids``/``statuses`` None means any; ``before``: only those
        that started before that conversation (the next page)."""
        await self._mostly_flushed()
        query = sa.select(conversations)
        if project_ids is not None:
            query = query.where(conversations.c.project_id.in_(sorted(project_ids)))
        if statuses is not None:
            query = query.where(conversations.c.status.in_(sorted(statuses)))
        if before is not None:
            created = conversations.c.created_at
            query = query.where(
                (created < before.created_at)
                | ((created == before.created_at) & (conversations.c.id < before.id))
            )
        query = query.order_by(conversations.c.created_at.desc(), conversations.c.id.desc())
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.limit(limit))
            return [ConversationRecord(**row._mapping) for row in rows]

    async def variables_of(self, conversation_id: str) -> dict[str, dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(variables).where(variables.c.conversation_id == conversation_id)
            )
            found: dict[str, dict[str, Any]] = {}
            for row in rows:
                found.setdefault(row.stage_id, {})[row.name] = row.value
        return found

    async def events_page(
        self, conversation_id: str, *, after: int | None, limit: int
    ) -> list[EventRecord]:
        """Events in order, those with ``seq`` greater than ``after`` (all when None)."""
        await self._mostly_flushed()
        query = sa.select(events).where(events.c.conversation_id == conversation_id)
        if after is not None:
            query = query.where(events.c.seq > after)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(events.c.seq).limit(limit))
            return [EventRecord(**row._mapping) for row in rows]
