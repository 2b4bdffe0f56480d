"""Hand-made JWTs, so the tests do not trust the library they are checking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from hubbub.auth.keys import KeyRing
from hubbub.config import key_ring_of, parse_config

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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(
    claims: dict[str, Any],
    *,
    secret: str = SECRET,
    kid: str | None = KID,
    alg: str = "HS256",
    header_extra: dict[str, Any] | None = None,
) -> str:
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    header.update(header_extra or {})
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if alg == "none":
        signature = b""
    else:
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512, "HS384": hashlib.sha384}[alg]
        signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"
