"""Apps and their API keys, built once from auth's own key specification.

:class:`KeySpec` is what auth needs to know about a key; ``hubbub.config`` translates the
configuration file's tables into it, so auth never depends on the file's schema.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from hubbub.protocol.patterns import ChannelPattern, compile_pattern

# A secret key whose secret starts with this is also accepted as a bare ``Bearer sk_live_…``
# on the REST API (the hosted service's older single-value form, spec 9.2).
LEGACY_SECRET_PREFIX = "sk_live_"


@dataclass(frozen=True, slots=True)
class IceServer:
    """One RTCIceServer entry, handed to clients as given (spec 11.4)."""

    urls: str | tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class TurnServer:
    """A TURN server that accepts time-limited credentials (coturn ``use-auth-secret``)."""

    urls: tuple[str, ...]
    shared_secret: str
    ttl_s: int


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key of one app, as auth takes it: patterns still as text, actions resolved."""

    id: str
    app_id: str
    kind: Literal["publishable", "secret"]
    secret: str | None
    channel_patterns: tuple[str, ...]
    actions: frozenset[str]
    allowed_origins: frozenset[str] = frozenset()
    ice_servers: tuple[IceServer, ...] = ()
    turn: TurnServer | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    app_id: str
    kind: Literal["publishable", "secret"]
    secret: str | None
    patterns: tuple[ChannelPattern, ...]
    actions: frozenset[str]
    allowed_origins: frozenset[str]
    # Injected as welcome.metadata.iceServers and into the tokens this key mints.
    ice_servers: tuple[IceServer, ...] = ()
    turn: TurnServer | None = None

    @classmethod
    def from_spec(cls, spec: KeySpec) -> ApiKey:
        return cls(
            id=spec.id,
            app_id=spec.app_id,
            kind=spec.kind,
            secret=spec.secret,
            patterns=tuple(compile_pattern(p) for p in spec.channel_patterns),
            actions=spec.actions,
            allowed_origins=spec.allowed_origins,
            ice_servers=spec.ice_servers,
            turn=spec.turn,
        )


class KeyRing:
    def __init__(self, keys: list[ApiKey], app_ids: list[str]) -> None:
        self._by_id = {key.id: key for key in keys}
        self._legacy = [
            key
            for key in keys
            if key.kind == "secret" and (key.secret or "").startswith(LEGACY_SECRET_PREFIX)
        ]
        self.app_ids = tuple(app_ids)

    @classmethod
    def from_specs(cls, specs: Iterable[KeySpec], app_ids: Iterable[str]) -> KeyRing:
        """The ring of ``specs``; ``app_ids`` lists every app, those without keys too."""
        return cls([ApiKey.from_spec(spec) for spec in specs], list(app_ids))

    def get(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)

    def publishable(self, key_id: str) -> ApiKey | None:
        key = self._by_id.get(key_id)
        return key if key is not None and key.kind == "publishable" else None

    def secret(self, key_id: str) -> ApiKey | None:
        key = self._by_id.get(key_id)
        return key if key is not None and key.kind == "secret" else None

    def keys(self) -> list[ApiKey]:
        return list(self._by_id.values())

    def from_bearer(self, authorization: str | None) -> ApiKey | None:
        """The secret key an ``Authorization`` header proves, or None (one answer for all).

        ``Bearer <key id>:<secret>``, or ``Bearer sk_live_…`` alone for a key whose secret
        has that prefix (spec 9.2). Secrets are compared in constant time.
        """
        if authorization is None:
            return None
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return None
        key_id, colon, secret = credential.partition(":")
        if colon:
            key = self.secret(key_id)
            if key is None or key.secret is None:
                return None
            return key if _same(key.secret, secret) else None
        found = None
        for key in self._legacy:
            assert key.secret is not None
            if _same(key.secret, credential):
                found = key
        return found


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))
