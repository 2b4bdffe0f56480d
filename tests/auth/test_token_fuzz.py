"""Fuzzed JWT claims (issue 11): tokens minted with PyJWT, as a customer's backend would,
carrying arbitrary claim values. Verification only ever answers a principal or one of the
documented rejections (invalid -> close 4001, expired -> close 4002), never an exception."""

from __future__ import annotations

import time
from typing import Any

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.auth.tokens import MAX_EXP_S, TokenRejected, verify_token
from hubbub.core.principal import Principal
from tests.auth.jwt_helpers import KID, SECRET, key_ring

NOW = time.time()
KEYS = key_ring()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
times = st.one_of(
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=False),
    st.floats(NOW - 100, NOW + 100_000),
    st.integers(int(NOW) - 10, int(NOW) + 10**6),
    json_values,
)
claims = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.one_of(st.text(max_size=140), st.sampled_from(["alice", "bob-1"]), json_values),
        "exp": times,
        "iat": times,
        "nbf": times,
        "aud": json_values,
        "iss": json_values,
        "channels": st.one_of(
            st.lists(st.sampled_from(["room-*", "lobby", "**", "a/*/b", "", "[x"]), max_size=5),
            json_values,
        ),
        "permissions": st.one_of(
            st.lists(st.sampled_from(["publish", "subscribe", "presence", "send", "x"])),
            json_values,
        ),
        "metadata": st.one_of(st.dictionaries(st.text(max_size=8), json_values), json_values),
        "peerMetadata": st.one_of(st.dictionaries(st.text(max_size=8), json_values), json_values),
    },
)


def _encode(payload: dict[str, Any], kid: str = KID) -> str | None:
    try:
        return jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": kid})
    except (TypeError, ValueError, OverflowError):
        return None  # PyJWT itself cannot mint it (a float inf, say): nothing to verify


@given(claims)
@settings(max_examples=250, deadline=None)
def test_fuzzed_claims_get_a_principal_or_a_documented_rejection(payload: dict[str, Any]) -> None:
    token = _encode(payload)
    if token is None:
        return
    result = verify_token(token, KEYS, NOW)
    if isinstance(result, TokenRejected):
        assert result.outcome in ("invalid", "expired", "unparsable")
        assert isinstance(result.reason, str) and result.reason
        return
    assert isinstance(result, Principal)
    assert result.peer_id == payload["sub"]
    assert result.expires_at is not None and abs(result.expires_at) <= MAX_EXP_S
    assert result.actions <= {"publish", "subscribe", "presence"}  # never beyond the key


@given(claims, st.sampled_from(["sk_id_other", "pk_live_open", "nope", ""]))
@settings(max_examples=100, deadline=None)
def test_fuzzed_claims_under_a_wrong_kid_are_always_refused(
    payload: dict[str, Any], kid: str
) -> None:
    token = _encode(payload, kid)
    if token is None:
        return
    result = verify_token(token, KEYS, NOW)
    assert isinstance(result, TokenRejected)
    assert result.outcome in ("invalid", "unparsable")
