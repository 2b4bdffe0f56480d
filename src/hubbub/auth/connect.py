"""Connect-time authentication: ``?key=`` / ``?token=`` and the Origin check (spec 2.2, 2.3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hubbub.auth.keys import KeyRing
from hubbub.auth.tokens import TokenRejected, verify_token
from hubbub.auth.turn import ice_servers_for
from hubbub.core.principal import ChannelScope, Principal
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import encode_json


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
        ice_servers = ice_servers_for(api_key.config, peer_id, now)
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
