"""Connect-time authentication: ``?key=`` / ``?token=`` and the Origin check (spec 2.2, 2.3),
and keys whose backend says who a connection is (a connect proxy, spec 16.4).

Transports describe an upgrade request as a :class:`ConnectAttempt` (plain mappings, no HTTP
library's types), so any WebSocket implementation can use :func:`authenticate_connect`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hubbub.auth.keys import KeyRing
from hubbub.auth.tokens import TokenRejected, scoped_principal, verify_token
from hubbub.auth.turn import ice_servers_for
from hubbub.core.principal import ChannelScope, Principal
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import encode_json
from hubbub.protocol.validation import is_valid_peer_id


@dataclass(frozen=True, slots=True)
class HttpRejection:
    """Refuse the upgrade itself (the browser sees close 1006)."""

    status: int
    body: str


@dataclass(frozen=True, slots=True)
class CloseRejection:
    """Accept the upgrade, then close before any welcome: the SDK can read the code."""

    code: CloseCode
    reason: str


AuthOutcome = Principal | HttpRejection | CloseRejection

# A connect proxy that answered with claims Hubbub cannot use is the backend's fault.
BACKEND_FAULT = HttpRejection(503, "backend_error")


@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    """An upgrade request as authentication sees it."""

    key: str | None
    token: str | None
    origin: str | None
    remote_addr: str
    headers: Mapping[str, str]  # as received; a connect proxy forwards an allow-list of them
    query: Mapping[str, str]


class ConnectProxy(Protocol):
    """A backend that says who a connection of a key is (implemented in ``hubbub.hooks``)."""

    def covers_connect(self, key_id: str) -> bool: ...

    async def identify(
        self, key_id: str, attempt: ConnectAttempt
    ) -> dict[str, Any] | HttpRejection:
        """The backend's claims (a JSON object), or the rejection its answer means."""


async def authenticate_connect(
    keys: KeyRing, attempt: ConnectAttempt, now: float, proxy: ConnectProxy | None = None
) -> AuthOutcome:
    """:func:`authenticate`, except that a publishable key with a connect proxy takes its
    principal from the backend: ``peerId`` plus optional ``channels``, ``permissions``,
    ``peerMetadata`` and ``metadata``, read like JWT claims and narrowed by the key."""
    if proxy is not None and attempt.key is not None and attempt.token is None:
        api_key = keys.publishable(attempt.key)
        if api_key is not None and proxy.covers_connect(api_key.id):
            origins = api_key.allowed_origins
            if origins and attempt.origin is not None and attempt.origin not in origins:
                return HttpRejection(401, "origin_not_allowed")
            answer = await proxy.identify(api_key.id, attempt)
            if isinstance(answer, HttpRejection):
                return answer
            peer_id = answer.get("peerId")
            if not is_valid_peer_id(peer_id):
                return BACKEND_FAULT
            assert isinstance(peer_id, str)
            principal = scoped_principal(answer, api_key, peer_id, now, None)
            return BACKEND_FAULT if isinstance(principal, TokenRejected) else principal
    return authenticate(keys, attempt.key, attempt.token, attempt.origin, now)


def authenticate(
    keys: KeyRing, key: str | None, token: str | None, origin: str | None, now: float
) -> AuthOutcome:
    if (key is None) == (token is None):
        return CloseRejection(CloseCode.INVALID_TOKEN, "exactly one of key or token is required")
    if key is not None:
        api_key = keys.publishable(key)
        if api_key is None:
            return CloseRejection(CloseCode.INVALID_TOKEN, "unknown key")
        if api_key.allowed_origins and origin is not None and origin not in api_key.allowed_origins:
            return HttpRejection(401, "origin_not_allowed")
        peer_id = str(uuid.uuid4())
        ice_servers = ice_servers_for(api_key, peer_id, now)
        return Principal(
            app_id=api_key.app_id,
            peer_id=peer_id,
            key_id=api_key.id,
            actions=api_key.actions,
            scope=ChannelScope((api_key.patterns,)),
            welcome_metadata=(
                encode_json({"iceServers": ice_servers}) if ice_servers is not None else None
            ),
        )
    assert token is not None
    verified = verify_token(token, keys, now)
    if isinstance(verified, TokenRejected):
        if verified.outcome == "unparsable":
            return HttpRejection(401, "invalid_token")
        if verified.outcome == "expired":
            return CloseRejection(CloseCode.TOKEN_EXPIRED, verified.reason)
        return CloseRejection(CloseCode.INVALID_TOKEN, verified.reason)
    return verified
