"""The usage store's role: the counters an app's plan limits need, and its contract.

Quotas (spec 16.6) are per app and cluster-wide: concurrent connections (refused at connect
with close 4010) and billable messages per period (``over_message_quota``). The store counts;
the node decides what a refusal means. ``hubbub.brokers.memory`` counts in one process,
``hubbub.brokers.redis_stores`` in Redis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AppQuota:
    max_concurrent_connections: int | None = None
    max_messages_per_period: int | None = None
    period_s: int = 30 * 24 * 3600

    def period_bounds(self, now: float) -> tuple[int, int]:
        start = int(now // self.period_s) * self.period_s
        return start, start + self.period_s


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    concurrent_now: int
    peak_concurrent: int
    messages_used: int
    period_start: int
    period_end: int


class UsageStore(ABC):
    @abstractmethod
    async def open_connection(self, app_id: str, quota: AppQuota) -> bool:
        """Count a new connection of the app; False (and nothing counted) when
        ``quota.max_concurrent_connections`` is reached. The check and the count are one
        step, so two nodes racing for the last place cannot both get it. Raises
        ``BrokerUnavailable`` when the store cannot be reached."""

    @abstractmethod
    async def close_connection(self, app_id: str) -> None:
        """Count a connection counted by :meth:`open_connection` closed; never below 0."""

    @abstractmethod
    async def count_message(self, app_id: str, quota: AppQuota, now: float) -> bool:
        """Count one billable message in the period holding ``now`` (always, even over the
        quota, so usage shows what was attempted); False when the period's count was already
        at ``quota.max_messages_per_period``. A new period starts from 0."""

    @abstractmethod
    async def snapshot(self, app_id: str, quota: AppQuota, now: float) -> UsageSnapshot:
        """The app's counters for the period holding ``now`` (``GET /v1/usage``): open
        connections, their peak, and the messages counted in the period."""
