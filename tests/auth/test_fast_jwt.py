"""The connect path's own HS256 verification against PyJWT's, token for token (Hypothesis).

``verify_token`` verifies the common token shape itself and hands anything else to PyJWT;
``verify_token_pyjwt`` is PyJWT alone. Whatever the token, both must reach the same outcome:
the same principal, or a refusal of the same kind (unparsable: HTTP 401; invalid: 4001;
expired: 4002). Neither may raise.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.auth.tokens import TokenRejected, verify_token, verify_token_pyjwt
from hubbub.core.principal import Principal
from tests.auth.jwt_helpers import KID, SECRET, key_ring, make_jwt
from tests.support.tokens import b64url

KEYS = key_ring()
NOW = time.time()

numbers = st.one_of(
    st.integers(min_value=-(10**3), max_value=10**3).map(lambda d: int(NOW) + d),
    st.floats(min_value=NOW - 1000, max_value=NOW + 1000),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 1e308, float("inf"), float("nan"), 0, True, False]),
    st.sampled_from(["12", str(int(NOW)), "soon", "", None]),
    st.lists(st.integers(), max_size=2),
)
claim_values = st.one_of(
    numbers, st.text(max_size=8), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if draw(st.booleans()):
        claims["sub"] = draw(
            st.one_of(st.sampled_from(["alice", "bob-1", "x" * 129]), claim_values)
        )
    if draw(st.integers(0, 4)):
        claims["exp"] = draw(numbers)
    for name in ("iat", "nbf", "jti"):
        if draw(st.integers(0, 3)) == 0:
            claims[name] = draw(claim_values)
    if draw(st.booleans()):
        claims["channels"] = draw(
            st.one_of(st.just(["room-1"]), st.just(["lobby", "**"]), claim_values)
        )
    if draw(st.integers(0, 3)) == 0:
        claims["permissions"] = draw(st.sampled_from([["publish"], [], "publish", [1]]))
    if draw(st.integers(0, 3)) == 0:
        claims["peerMetadata"] = draw(st.one_of(st.just({"name": "A"}), claim_values))
    return claims


@st.composite
def tokens(draw: st.DrawFn) -> str:
    claims = draw(claim_sets())
    kid = draw(st.sampled_from([KID, KID, KID, "sk_id_other", "pk_live_open", "unknown", None, ""]))
    alg = draw(st.sampled_from(["HS256", "HS256", "HS256", "HS512", "none"]))
    extra = draw(
        st.sampled_from(
            [
                None,
                None,
                {"typ": "at+jwt"},
                {"crit": ["b64"], "b64": False},
                {"cty": "x"},
                {"kid": 5},
            ]
        )
    )
    secret = draw(
        st.sampled_from([SECRET, SECRET, "sk_secret_other_0123456789abcdefghijklmnop", "wrong"])
    )
    token = make_jwt(claims, secret=secret, kid=kid, alg=alg, header_extra=extra)
    mangle = draw(st.integers(0, 9))
    head, body, signature = token.split(".")
    if mangle == 1:
        token = f"{head}.{body}.{signature}=="
    elif mangle == 2:
        token = f"{head}.{body}x.{signature}"
    elif mangle == 3:
        token = f"{head}.{body}"
    elif mangle == 4:
        token = f"{head}.{body}.{signature}.{signature}"
    elif mangle == 5:
        token = f"{head}!.{body}.{signature}"
    elif mangle == 6:
        raw = draw(
            st.sampled_from([b"[1]", b"nope", b'{"sub": NaN}', b"\xff\xfe", b'{"a": 1e400}'])
        )
        token = f"{head}.{b64url(raw)}.{signature}"
    elif mangle == 7:
        token = f"{b64url(json.dumps([1]).encode())}.{body}.{signature}"
    return token


def outcome(result: Principal | TokenRejected) -> object:
    return result.outcome if isinstance(result, TokenRejected) else result


@settings(max_examples=1500, deadline=None)
@given(tokens())
def test_the_fast_path_agrees_with_pyjwt(token: str) -> None:
    assert outcome(verify_token(token, KEYS, NOW)) == outcome(verify_token_pyjwt(token, KEYS, NOW))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_raises_and_agrees(token: str) -> None:
    assert outcome(verify_token(token, KEYS, NOW)) == outcome(verify_token_pyjwt(token, KEYS, NOW))


def test_an_overflowing_exp_is_a_4001_not_an_exception() -> None:
    for exp in (10**400, -(10**400), float("inf"), 1e308):
        result = verify_token(make_jwt({"sub": "alice", "exp": exp}), KEYS, NOW)
        assert isinstance(result, TokenRejected) and result.outcome == "invalid", exp


def test_an_overflowing_iat_is_refused_by_both() -> None:
    token = make_jwt({"sub": "alice", "exp": int(NOW) + 60, "iat": float("inf")})
    assert outcome(verify_token(token, KEYS, NOW)) == "invalid"
    assert outcome(verify_token_pyjwt(token, KEYS, NOW)) == "invalid"


def test_a_good_token_takes_the_fast_path_to_the_same_principal() -> None:
    token = make_jwt(
        {"sub": "alice", "exp": int(NOW) + 60, "iat": int(NOW), "channels": ["room-1"]}
    )
    fast = verify_token(token, KEYS, NOW)
    assert (
        isinstance(fast, Principal) and fast.peer_id == "alice" and fast.expires_at == int(NOW) + 60
    )
    assert fast == verify_token_pyjwt(token, KEYS, NOW)
