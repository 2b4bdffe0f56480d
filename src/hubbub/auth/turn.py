"""ICE servers for WebRTC clients: a key's static list plus time-limited TURN credentials.

The credentials follow the TURN REST convention that coturn's ``use-auth-secret`` checks:
the username is ``"<expiry unix seconds>:<peerId>"`` and the password is the base64 of
HMAC-SHA1 over the username, keyed with the secret shared with the TURN server. The TURN server
recomputes it and refuses the username once its expiry has passed, so nothing is stored.

Sans-I/O: the time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from hubbub.auth.keys import ApiKey, TurnServer


def turn_credentials(shared_secret: str, peer_id: str, expires_at: int) -> tuple[str, str]:
    """``(username, credential)`` valid until ``expires_at`` (Unix seconds)."""
    username = f"{expires_at}:{peer_id}"
    digest = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def _turn_entry(turn: TurnServer, peer_id: str, expires_at: int) -> dict[str, Any]:
    username, credential = turn_credentials(turn.shared_secret, peer_id, expires_at)
    return {"urls": list(turn.urls), "username": username, "credential": credential}


def ice_servers_for(
    key: ApiKey, peer_id: str, now: float, valid_until: int | None = None
) -> list[dict[str, Any]] | None:
    """The ``iceServers`` a client of ``key`` gets, or None when the key configures none.

    TURN credentials last ``ttl_s`` from ``now``, or until ``valid_until`` when that is later
    (a minted token should not carry credentials that die before the token does).
    """
    if not key.ice_servers and key.turn is None:
        return None
    servers: list[dict[str, Any]] = []
    for server in key.ice_servers:
        urls = server.urls if isinstance(server.urls, str) else list(server.urls)
        entry: dict[str, Any] = {"urls": urls}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        servers.append(entry)
    if key.turn is not None:
        expires_at = int(now) + key.turn.ttl_s
        if valid_until is not None:
            expires_at = max(expires_at, valid_until)
        servers.append(_turn_entry(key.turn, peer_id, expires_at))
    return servers


def with_ice_servers(
    metadata: dict[str, Any] | None,
    key: ApiKey,
    peer_id: str,
    now: float,
    valid_until: int | None = None,
) -> dict[str, Any] | None:
    """``metadata`` with the key's ICE servers added, unless it already names its own."""
    if metadata is not None and "iceServers" in metadata:
        return metadata
    servers = ice_servers_for(key, peer_id, now, valid_until)
    if servers is None:
        return metadata
    return {**(metadata or {}), "iceServers": servers}
