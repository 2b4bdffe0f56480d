"""Fixtures for the network-free node tests (see :mod:`tests.core.fakes`)."""

from __future__ import annotations

import pytest

from tests.core.fakes import Hub


@pytest.fixture
async def hub() -> Hub:
    return await Hub().start()
