"""A fresh PostgreSQL database on the machine's server for one test (skipped when unreachable)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


async def postgres_url() -> AsyncIterator[str]:
    """Yields the URL of a new database, dropped afterwards."""
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hubbub_test_{uuid.uuid4().hex[:12]}"
    try:
        async with asyncio.timeout(5), admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, sa.exc.OperationalError, sa.exc.DBAPIError) as exc:
        await admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({type(exc).__name__})")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
