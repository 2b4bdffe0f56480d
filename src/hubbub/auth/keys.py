"""Apps and their API keys, built once from the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hubbub.config import Config, KeyConfig
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
