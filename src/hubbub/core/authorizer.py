"""The authorizer: a backend that decides a connection's subscribes and publishes.

The node's own checks (reserved prefixes, actions, channel scope, limits) always run first; an
authorizer can only narrow what they allowed, never widen it. It is consulted only for the
connections whose key names it (``covers_*``), so every other connection keeps the fast path.

Contract for every :class:`Authorizer`:

* ``subscribe`` / ``publish`` return a :class:`Verdict` and never raise: a backend that fails
  or does not answer in time is a ``backend_error`` verdict, decided by the implementation.
* A verdict's ``code`` is what the client's ``error`` frame carries; the backend may choose it
  (spec 16.4), so it is a plain string, not necessarily one of :class:`ErrorCode`.
* ``publish`` may replace the payload: ``data`` is then the raw JSON to publish instead.

A connection whose key has an authorizer gets its frames handled in order by a
:class:`~hubbub.core.lane.FrameLane`, so a slow backend holds up that connection's later
frames (which keeps its publishes in order) but never its reading, its pings, or any other
connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from hubbub.core.principal import Principal
from hubbub.protocol.codes import ErrorCode


@dataclass(frozen=True, slots=True)
class Verdict:
    code: str | None = None  # None: allowed
    data: bytes | None = None  # publish: the replacement payload (raw JSON), if any

    @property
    def allowed(self) -> bool:
        return self.code is None


ALLOWED: Final = Verdict()
BACKEND_ERROR: Final = Verdict(code=ErrorCode.BACKEND_ERROR.value)


class Authorizer(Protocol):
    def covers_subscribe(self, principal: Principal) -> bool: ...

    def covers_publish(self, principal: Principal) -> bool: ...

    async def subscribe(self, principal: Principal, channel: str) -> Verdict: ...

    async def publish(self, principal: Principal, channel: str, data: bytes) -> Verdict: ...


class NoAuthorizer:
    """A server whose keys name no proxies."""

    def covers_subscribe(self, principal: Principal) -> bool:
        return False

    def covers_publish(self, principal: Principal) -> bool:
        return False

    async def subscribe(self, principal: Principal, channel: str) -> Verdict:
        return ALLOWED

    async def publish(self, principal: Principal, channel: str, data: bytes) -> Verdict:
        return ALLOWED


NO_AUTHORIZER: Final = NoAuthorizer()
