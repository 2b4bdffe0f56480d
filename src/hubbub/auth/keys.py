"""Apps and their API keys, built once from the configuration."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from hubbub.config import LEGACY_SECRET_PREFIX, Config, KeyConfig
from hubbub.protocol.patterns import ChannelPattern, compile_pattern


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    app_id: str
    kind: Literal["publishable", "secret"]
    secret: str | None
    patterns: tuple[ChannelPattern, ...]
    actions: frozenset[str]
    allowed_origins: frozenset[str]
    config: KeyConfig


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
    def from_config(cls, config: Config) -> KeyRing:
        keys = [
            ApiKey(
                id=key.id,
                app_id=app.id,
                kind=key.kind,
                secret=key.secret,
                patterns=tuple(compile_pattern(p) for p in key.channel_patterns),
                actions=key.effective_actions(),
                allowed_origins=frozenset(key.allowed_origins),
                config=key,
            )
            for app in config.apps
            for key in app.keys
        ]
        return cls(keys, [app.id for app in config.apps])

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
