"""What ``hubbub token`` and ``hubbub keys new`` do, apart from argument parsing and printing."""

from __future__ import annotations

import secrets
from typing import Literal

from hubbub.auth.keys import KeyRing
from hubbub.auth.tokens import mint_token
from hubbub.auth.turn import with_ice_servers
from hubbub.errors import AuthError
from hubbub.protocol.patterns import PatternError, compile_pattern, covers
from hubbub.protocol.validation import is_valid_peer_id

MAX_CLI_TOKEN_TTL_S = 86400


class TokenRequestError(AuthError):
    """The command line asked for a token the configuration cannot sign."""


def token_for(
    ring: KeyRing,
    app_id: str,
    peer_id: str,
    channels: list[str] | None,
    ttl_s: int,
    now: float,
) -> str:
    """A JWT for ``peer_id`` signed with the app's first secret key, bounded like REST mints."""
    if not is_valid_peer_id(peer_id):
        raise TokenRequestError("--peer must be 1-128 printable ASCII characters")
    if not 1 <= ttl_s <= MAX_CLI_TOKEN_TTL_S:
        raise TokenRequestError(f"--ttl must be from 1 to {MAX_CLI_TOKEN_TTL_S} seconds")
    if app_id not in ring.app_ids:
        raise TokenRequestError(f"no app {app_id!r} in the configuration")
    signers = [k for k in ring.keys() if k.app_id == app_id and k.kind == "secret"]  # noqa: SIM118
    key = signers[0] if signers else None
    if key is None:
        raise TokenRequestError(f"app {app_id!r} has no secret key to sign with")
    for channel in channels or ():
        try:
            pattern = compile_pattern(channel)
        except PatternError as exc:
            raise TokenRequestError(str(exc)) from None
        if not covers(key.patterns, pattern):
            raise TokenRequestError(f"channel {channel!r} is outside key {key.id}'s patterns")
    issued_at = int(now)
    expires_at = issued_at + ttl_s
    return mint_token(
        key,
        peer_id,
        expires_at=expires_at,
        issued_at=issued_at,
        channels=channels,
        metadata=with_ice_servers(None, key, peer_id, now, valid_until=expires_at),
    )


def new_key_toml(kind: Literal["publishable", "secret"]) -> str:
    """A ``[[apps.keys]]`` table with fresh random identifiers, ready to paste under an app."""
    if kind == "publishable":
        return (
            "[[apps.keys]]\n"
            f'id = "pk_live_{secrets.token_urlsafe(18)}"\n'
            'kind = "publishable"\n'
            'channel_patterns = ["**"]\n'
            'actions = ["publish", "subscribe", "presence"]\n'
            "allowed_origins = []\n"
        )
    return (
        "[[apps.keys]]\n"
        f'id = "sk_id_{secrets.token_urlsafe(12)}"\n'
        'kind = "secret"\n'
        f'secret = "sk_secret_{secrets.token_urlsafe(32)}"\n'
        'channel_patterns = ["**"]\n'
        'actions = ["publish", "subscribe", "presence", "send"]\n'
    )
