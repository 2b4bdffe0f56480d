"""The auth tests' keys, and hand-made JWTs signed with them (``tests.support.tokens``)."""

from __future__ import annotations

from typing import Any

from hubbub.auth.keys import KeyRing
from hubbub.config import key_ring_of, parse_config
from tests.support.tokens import make_jwt as support_make_jwt

# At least 32 bytes: PyJWT warns about shorter HMAC keys.
SECRET = "sk_secret_test_0123456789abcdefghijklmnop"
KID = "sk_id_test"

KEYS_TOML = """
[[apps]]
id = "app1"

[[apps.keys]]
id = "pk_live_open"
kind = "publishable"

[[apps.keys]]
id = "pk_live_origins"
kind = "publishable"
channel_patterns = ["room-*"]
actions = ["subscribe", "presence"]
allowed_origins = ["https://good.example", "http://localhost:3000"]

[[apps.keys]]
id = "sk_id_test"
kind = "secret"
secret = "sk_secret_test_0123456789abcdefghijklmnop"
channel_patterns = ["room-*", "lobby"]
actions = ["publish", "subscribe", "presence"]

[[apps]]
id = "app2"

[[apps.keys]]
id = "sk_id_other"
kind = "secret"
secret = "sk_secret_other_0123456789abcdefghijklmnop"
"""


def key_ring() -> KeyRing:
    return key_ring_of(parse_config(KEYS_TOML, "test.toml"))


def make_jwt(
    claims: dict[str, Any],
    *,
    secret: str = SECRET,
    kid: str | None = KID,
    alg: str = "HS256",
    header_extra: dict[str, Any] | None = None,
) -> str:
    """A token signed by hand with this module's test key unless told otherwise."""
    return support_make_jwt(claims, secret=secret, kid=kid, alg=alg, header_extra=header_extra)
