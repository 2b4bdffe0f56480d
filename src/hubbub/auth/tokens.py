"""HS256 JWTs chosen by ``kid``: verification for connects, minting for REST and the CLI.

PyJWT is imported here and nowhere else. Its exceptions are translated at this boundary into
:class:`TokenRejected` values carrying the protocol's outcome (close 4001, close 4002, or an
HTTP 401 for a token that cannot be parsed at all).

Connects verify the common token shape without PyJWT (``_verify_plain``): three base64url
segments, a header of only ``alg``/``kid``/``typ``, JSON that msgspec reads. The checks are
PyJWT's, in its order (header, ``alg``, constant-time signature compare with an HMAC prepared
once per secret, payload, required ``sub``/``exp``, ``iat``/``nbf`` with leeway, ``sub`` and
``jti`` types), about 10x cheaper: PyJWT re-parses the header and re-checks the secret's
format on every call. Anything else (padding, extra header parameters such as ``crit`` or
``b64``, JSON only the stdlib reads) goes through PyJWT itself, so the outcome is the same as
PyJWT's for every token; ``tests/auth/test_fast_jwt.py`` checks that differentially.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt
import jwt.warnings
import msgspec

from hubbub.auth.keys import ApiKey, KeyRing
from hubbub.auth.turn import with_ice_servers
from hubbub.core.principal import EXPIRY_MARGIN_S, ChannelScope, Principal
from hubbub.protocol.patterns import PatternError, compile_pattern
from hubbub.protocol.validation import (
    ACTIONS,
    MAX_METADATA_BYTES,
    MAX_PEER_METADATA_BYTES,
    is_valid_peer_id,
)

LEEWAY_S: Final = 5.0
# The largest exp accepted: JSON integers beyond 2**53 lose precision in JavaScript clients.
MAX_EXP_S: Final = 2**53 - 1

_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_PLAIN_HEADER_KEYS: Final = frozenset({"alg", "kid", "typ"})
# One prepared HMAC per secret; each verification copies it (the key schedule is done once).
_prepared: dict[str, hmac.HMAC] = {}

# Secrets are the operator's choice (the demo's "sk_secret_demo" is shorter than RFC 7518's
# recommended 32 bytes); `hubbub keys new` generates long ones. PyJWT would warn on every
# signature check, flooding the log, so the warning is silenced here once.
warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)


@dataclass(frozen=True, slots=True)
class TokenRejected:
    outcome: Literal["unparsable", "invalid", "expired"]
    reason: str


def _object_claim(claims: dict[str, Any], name: str, max_bytes: int) -> bytes | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object")
    encoded = _encode_json(value)
    if len(encoded) > max_bytes:
        raise ValueError(f"{name} is larger than {max_bytes} bytes")
    return encoded


def _b64(segment: str) -> bytes | None:
    """A base64url segment without padding, decoded; None if PyJWT's rules need checking."""
    if len(segment) % 4 == 1 or _SEGMENT.fullmatch(segment) is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    # Non-canonical trailing bits: PyJWT refuses those.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode():
        return None
    return decoded


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = _decode_json(data)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _verify_plain(token: str, keys: KeyRing, now: float) -> Principal | TokenRejected | None:
    """PyJWT's verification for the common shape of token; None: let PyJWT decide."""
    if token.count(".") != 2 or not token.isascii():
        return None
    header_segment, payload_segment, signature_segment = token.split(".")
    raw_header = _b64(header_segment)
    raw_payload = _b64(payload_segment)
    signature = _b64(signature_segment)
    if raw_header is None or raw_payload is None or signature is None:
        return None
    header = _json_object(raw_header)
    if header is None or not header.keys() <= _PLAIN_HEADER_KEYS:
        return None
    found = _signing_key(header, keys)
    if isinstance(found, TokenRejected):
        return found
    key, secret = found
    prepared = _prepared.get(secret)
    if prepared is None:
        prepared = _prepared[secret] = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    mac = prepared.copy()
    mac.update(token[: len(header_segment) + 1 + len(payload_segment)].encode())
    if not hmac.compare_digest(mac.digest(), signature):
        return TokenRejected("invalid", "token rejected: Signature verification failed")
    claims = _json_object(raw_payload)
    if claims is None:
        return None  # not JSON msgspec reads (or not an object): PyJWT's verdict
    rejected = _check_claims(claims, now)
    if rejected is not None:
        return rejected
    return _principal_from_claims(claims, key, now)


def _signing_key(header: dict[str, Any], keys: KeyRing) -> tuple[ApiKey, str] | TokenRejected:
    """The secret key a token's header names and its secret, checked alike on both paths."""
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return TokenRejected("unparsable", "token has no kid")
    key = keys.secret(kid)
    if key is None or key.secret is None:
        return TokenRejected("invalid", "unknown kid")
    if header.get("alg") != "HS256":
        return TokenRejected("invalid", "only HS256 is accepted")
    return key, key.secret


def _check_claims(claims: dict[str, Any], now: float) -> TokenRejected | None:
    """PyJWT's claim checks with require=[sub, exp], verify_exp off, LEEWAY_S."""
    for name in ("sub", "exp"):
        if claims.get(name) is None:
            return TokenRejected("invalid", f'token rejected: Token is missing the "{name}" claim')
    for name, invalid in (
        ("iat", "Issued At claim (iat) must be an integer."),
        ("nbf", "Not Before claim (nbf) must be an integer."),
    ):
        if name in claims:
            try:
                value = int(claims[name])
            except (ValueError, TypeError, OverflowError):
                return TokenRejected("invalid", f"token rejected: {invalid}")
            if value > now + LEEWAY_S:
                return TokenRejected(
                    "invalid", f"token rejected: The token is not yet valid ({name})"
                )
    if not isinstance(claims["sub"], str):
        return TokenRejected("invalid", "token rejected: Subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        return TokenRejected("invalid", "token rejected: JWT ID must be a string")
    return None


def verify_token(token: str, keys: KeyRing, now: float) -> Principal | TokenRejected:
    verified = _verify_plain(token, keys, now)
    return verified if verified is not None else verify_token_pyjwt(token, keys, now)


def verify_token_pyjwt(token: str, keys: KeyRing, now: float) -> Principal | TokenRejected:
    """Verification by PyJWT alone (every token shape; the reference for the fast path)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return TokenRejected("unparsable", "token cannot be parsed")
    found = _signing_key(header, keys)
    if isinstance(found, TokenRejected):
        return found
    key, secret = found
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=LEEWAY_S,
            # exp is checked below against the close margin, without leeway.
            options={"require": ["sub", "exp"], "verify_exp": False, "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        return TokenRejected("invalid", f"token rejected: {exc}")
    except (OverflowError, ValueError, TypeError, RecursionError):
        # PyJWT lets a few claim shapes escape as plain exceptions; still a refused token.
        return TokenRejected("invalid", "token rejected: malformed claims")
    return _principal_from_claims(claims, key, now)


def _principal_from_claims(
    claims: dict[str, Any], key: ApiKey, now: float
) -> Principal | TokenRejected:
    sub, exp = claims.get("sub"), claims.get("exp")
    if not is_valid_peer_id(sub):
        return TokenRejected("invalid", "sub must be 1-128 printable ASCII characters")
    assert isinstance(sub, str)
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return TokenRejected("invalid", "exp must be a number")
    # Compared before any float arithmetic: 10**400 overflows a float (a 500, once).
    if not -MAX_EXP_S <= exp <= MAX_EXP_S or not math.isfinite(exp):
        return TokenRejected("invalid", "exp is out of range")
    if exp - EXPIRY_MARGIN_S <= now:
        return TokenRejected("expired", "token expired")
    return scoped_principal(claims, key, sub, now, math.floor(exp))


def scoped_principal(
    claims: dict[str, Any], key: ApiKey, peer_id: str, now: float, expires_at: int | None
) -> Principal | TokenRejected:
    """The principal that ``channels``, ``permissions``, ``metadata`` and ``peerMetadata``
    claims describe, narrowed by ``key``: a JWT's claims, or a connect proxy's answer."""
    layers = [key.patterns]
    channels = claims.get("channels")
    if channels is not None:
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            return TokenRejected("invalid", "channels must be a list of strings")
        try:
            layers.append(tuple(compile_pattern(c) for c in channels))
        except PatternError as exc:
            return TokenRejected("invalid", str(exc))

    actions = key.actions
    permissions = claims.get("permissions")
    if permissions is not None:
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            return TokenRejected("invalid", "permissions must be a list of strings")
        actions = actions & frozenset(permissions) & ACTIONS

    try:
        metadata = _object_claim(claims, "metadata", MAX_METADATA_BYTES)
        peer_metadata = _object_claim(claims, "peerMetadata", MAX_PEER_METADATA_BYTES)
    except ValueError as exc:
        return TokenRejected("invalid", str(exc))
    # The key's ICE servers go into the welcome unless the token brought its own (spec 3.1).
    claimed = claims.get("metadata")
    injected = with_ice_servers(claimed, key, peer_id, now)
    if injected is not claimed:
        metadata = _encode_json(injected)

    return Principal(
        app_id=key.app_id,
        peer_id=peer_id,
        key_id=key.id,
        actions=actions,
        scope=ChannelScope(tuple(layers)),
        expires_at=expires_at,
        welcome_metadata=metadata,
        peer_metadata=peer_metadata,
    )


def mint_token(
    key: ApiKey,
    peer_id: str,
    *,
    expires_at: int,
    issued_at: int,
    channels: list[str] | None = None,
    permissions: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    peer_metadata: dict[str, Any] | None = None,
) -> str:
    """Sign a token for ``peer_id`` with a secret key. Callers validate the inputs' bounds."""
    if key.kind != "secret" or key.secret is None:
        raise ValueError("only secret keys can sign tokens")
    claims: dict[str, Any] = {"sub": peer_id, "iat": issued_at, "exp": expires_at}
    if channels is not None:
        claims["channels"] = channels
    if permissions is not None:
        claims["permissions"] = permissions
    if metadata is not None:
        claims["metadata"] = metadata
    if peer_metadata is not None:
        claims["peerMetadata"] = peer_metadata
    return jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.id})
