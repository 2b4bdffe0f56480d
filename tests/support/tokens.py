"""The one JWT minting helper of the tests: HS256 tokens signed by hand.

Signed with ``hmac`` rather than PyJWT, so tests of the verifier do not trust the library it
uses. :func:`make_jwt` builds any token (odd headers, other algorithms, bad signatures);
:func:`mint_token` is a customer backend's usual token for a peer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

# The demo app's secret key (``hubbub.config.PUBLIC_DEMO_SECRET_KEY``).
DEMO_SECRET_KEY_ID = "sk_id_demo"
DEMO_SECRET = "sk_secret_demo"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(
    claims: dict[str, Any],
    *,
    secret: str,
    kid: str | None,
    alg: str = "HS256",
    header_extra: dict[str, Any] | None = None,
) -> str:
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    header.update(header_extra or {})
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if alg == "none":
        signature = b""
    else:
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512, "HS384": hashlib.sha384}[alg]
        signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def mint_token(
    sub: str,
    *,
    expires_in_s: float = 3600,
    kid: str = DEMO_SECRET_KEY_ID,
    secret: str = DEMO_SECRET,
    **claims: Any,
) -> tuple[str, int]:
    """An HS256 token for peer ``sub`` as a customer backend would mint it: ``(token, exp)``.
    Extra keyword arguments are claims (``channels=[...]``, ``peerMetadata={...}``)."""
    now = time.time()
    exp = int(now + expires_in_s)
    payload = {"sub": sub, "iat": int(now), "exp": exp, **claims}
    return make_jwt(payload, secret=secret, kid=kid), exp
