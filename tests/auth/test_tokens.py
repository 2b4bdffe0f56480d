"""verify_token: HS256 by kid, required claims, leeway, scope narrowing, metadata limits."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from hubbub.auth.tokens import TokenRejected, mint_token, verify_token
from hubbub.core.principal import Principal
from hubbub.protocol.patterns import compile_pattern
from tests.auth.jwt_helpers import KID, key_ring, make_jwt


def claims(now: float, **extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(now) + 3600, **extra}


def verify(token: str, now: float | None = None) -> Principal | TokenRejected:
    return verify_token(token, key_ring(), time.time() if now is None else now)


def rejected(result: object) -> tuple[str, str]:
    assert isinstance(result, TokenRejected), result
    return result.outcome, result.reason


def test_a_good_token_gives_its_principal() -> None:
    now = time.time()
    exp = int(now) + 3600
    result = verify(make_jwt(claims(now, iat=int(now))))
    assert isinstance(result, Principal)
    assert (result.app_id, result.peer_id, result.key_id) == ("app1", "alice", KID)
    assert result.expires_at == exp
    assert result.actions == frozenset({"publish", "subscribe", "presence"})
    assert result.welcome_metadata is None and result.peer_metadata is None
    # Without a channels claim the key's patterns are the only layer.
    assert result.scope.allows_channel("room-1") and result.scope.allows_channel("lobby")
    assert not result.scope.allows_channel("admin")


def test_fractional_exp_is_floored() -> None:
    now = time.time()
    result = verify(make_jwt({"sub": "a", "exp": int(now) + 100.75}))
    assert isinstance(result, Principal)
    assert result.expires_at == int(now) + 100


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "...."],
)
def test_unparsable_tokens(token: str) -> None:
    assert rejected(verify(token))[0] == "unparsable"


def test_a_token_without_kid_is_unparsable() -> None:
    now = time.time()
    assert rejected(verify(make_jwt(claims(now), kid=None))) == ("unparsable", "token has no kid")
    assert rejected(verify(make_jwt(claims(now), kid=""))) == ("unparsable", "token has no kid")
    assert rejected(verify(make_jwt(claims(now), header_extra={"kid": 5})))[0] == "unparsable"


def test_unknown_kid_and_publishable_kid_are_invalid() -> None:
    now = time.time()
    assert rejected(verify(make_jwt(claims(now), kid="sk_id_nope"))) == ("invalid", "unknown kid")
    assert rejected(verify(make_jwt(claims(now), kid="pk_live_open"))) == ("invalid", "unknown kid")


@pytest.mark.parametrize("alg", ["none", "HS512", "HS384"])
def test_only_hs256_is_accepted(alg: str) -> None:
    assert rejected(verify(make_jwt(claims(time.time()), alg=alg))) == (
        "invalid",
        "only HS256 is accepted",
    )


def test_bad_signature_is_invalid() -> None:
    now = time.time()
    assert rejected(verify(make_jwt(claims(now), secret="wrong")))[0] == "invalid"
    # Signed by another app's key but naming ours.
    assert (
        rejected(
            verify(make_jwt(claims(now), secret="sk_secret_other_0123456789abcdefghijklmnop"))
        )[0]
        == "invalid"
    )
    # A tampered payload.
    header, _, signature = make_jwt(claims(now)).split(".")
    _, payload, _ = make_jwt(claims(now, sub="mallory")).split(".")
    assert rejected(verify(f"{header}.{payload}.{signature}"))[0] == "invalid"


def test_the_kid_picks_the_key_and_its_app() -> None:
    now = time.time()
    result = verify(
        make_jwt(
            claims(now), kid="sk_id_other", secret="sk_secret_other_0123456789abcdefghijklmnop"
        )
    )
    assert isinstance(result, Principal)
    assert result.app_id == "app2"
    assert result.actions == frozenset({"publish", "subscribe", "presence", "send"})


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_sub_and_exp_are_required(missing: str) -> None:
    body = claims(time.time())
    del body[missing]
    outcome, reason = rejected(verify(make_jwt(body)))
    assert outcome == "invalid"
    assert missing in reason


@pytest.mark.parametrize("sub", ["", "é", "a\tb", "x" * 129, 42, None])
def test_sub_must_be_a_printable_ascii_peer_id(sub: Any) -> None:
    assert rejected(verify(make_jwt(claims(time.time(), sub=sub))))[0] == "invalid"


@pytest.mark.parametrize("exp", ["soon", True, [1]])
def test_exp_must_be_a_number(exp: Any) -> None:
    assert rejected(verify(make_jwt({"sub": "a", "exp": exp})))[0] == "invalid"


@pytest.mark.parametrize("exp", [10**400, -(10**400), 2**53, 1e308, -1e308])
def test_an_exp_beyond_2_to_the_53_is_invalid_not_an_overflow(exp: float) -> None:
    # 10**400 used to raise OverflowError in the float arithmetic: HTTP 500 at the upgrade.
    assert rejected(verify(make_jwt({"sub": "a", "exp": exp}))) == (
        "invalid",
        "exp is out of range",
    )


def test_expired_and_inside_the_close_margin_are_expired() -> None:
    now = float(int(time.time()))
    assert rejected(verify(make_jwt({"sub": "a", "exp": now - 1}), now)) == (
        "expired",
        "token expired",
    )
    # exp - 250 ms is when the server would close it: already due, so refuse with 4002.
    assert rejected(verify(make_jwt({"sub": "a", "exp": now + 0.25}), now))[0] == "expired"
    assert isinstance(verify(make_jwt({"sub": "a", "exp": now + 1}), now), Principal)


def test_nbf_and_iat_have_five_seconds_of_leeway() -> None:
    now = time.time()
    assert isinstance(verify(make_jwt(claims(now, nbf=int(now) + 4))), Principal)
    assert rejected(verify(make_jwt(claims(now, nbf=int(now) + 30))))[0] == "invalid"
    assert isinstance(verify(make_jwt(claims(now, iat=int(now) + 4))), Principal)
    assert rejected(verify(make_jwt(claims(now, iat=int(now) + 30))))[0] == "invalid"
    assert isinstance(verify(make_jwt(claims(now, nbf=int(now) - 100))), Principal)


def test_unknown_claims_and_aud_are_ignored() -> None:
    now = time.time()
    result = verify(make_jwt(claims(now, iss="backend", aud="someone", custom={"x": 1})))
    assert isinstance(result, Principal)


def test_channels_narrow_the_key_scope() -> None:
    now = time.time()
    result = verify(make_jwt(claims(now, channels=["room-1", "admin", "lobb*"])))
    assert isinstance(result, Principal)
    scope = result.scope
    assert scope.allows_channel("room-1")
    assert not scope.allows_channel("room-2")  # key yes, token no
    assert not scope.allows_channel("admin")  # token yes, key no
    assert scope.allows_channel("lobby")
    assert scope.allows_pattern(compile_pattern("room-1"))
    assert not scope.allows_pattern(compile_pattern("room-*"))


def test_empty_channels_claim_allows_nothing() -> None:
    result = verify(make_jwt(claims(time.time(), channels=[])))
    assert isinstance(result, Principal)
    assert not result.scope.allows_channel("room-1")


@pytest.mark.parametrize("channels", ["room-1", [1], {"a": 1}, ["ok", None]])
def test_channels_must_be_a_list_of_strings(channels: Any) -> None:
    assert rejected(verify(make_jwt(claims(time.time(), channels=channels)))) == (
        "invalid",
        "channels must be a list of strings",
    )


def test_a_bad_channel_pattern_is_invalid() -> None:
    outcome, reason = rejected(verify(make_jwt(claims(time.time(), channels=["room\\"]))))
    assert outcome == "invalid" and "backslash" in reason


def test_permissions_are_intersected_with_the_key() -> None:
    now = time.time()
    result = verify(make_jwt(claims(now, permissions=["publish", "send", "bogus"])))
    assert isinstance(result, Principal)
    assert result.actions == frozenset({"publish"})  # send: not on the key; bogus: not an action
    result = verify(make_jwt(claims(now, permissions=[])))
    assert isinstance(result, Principal) and result.actions == frozenset()


@pytest.mark.parametrize("permissions", ["publish", [True], None])
def test_permissions_must_be_a_list_of_strings(permissions: Any) -> None:
    result = verify(make_jwt(claims(time.time(), permissions=permissions)))
    if permissions is None:  # an explicit null is the same as leaving it out
        assert isinstance(result, Principal)
        assert result.actions == frozenset({"publish", "subscribe", "presence"})
    else:
        assert rejected(result) == ("invalid", "permissions must be a list of strings")


def test_metadata_and_peer_metadata_pass_through_as_json_bytes() -> None:
    now = time.time()
    ice = {"iceServers": [{"urls": "turn:t.example:3478", "username": "u", "credential": "c"}]}
    result = verify(make_jwt(claims(now, metadata=ice, peerMetadata={"name": "Alice"})))
    assert isinstance(result, Principal)
    assert result.welcome_metadata is not None and json.loads(result.welcome_metadata) == ice
    assert result.peer_metadata is not None and json.loads(result.peer_metadata) == {
        "name": "Alice"
    }


@pytest.mark.parametrize(
    ("claim", "limit"),
    [("metadata", 8192), ("peerMetadata", 4096)],
)
def test_metadata_size_limits(claim: str, limit: int) -> None:
    now = time.time()
    filler = len(b'{"x":""}')
    fits = {"x": "a" * (limit - filler)}
    too_big = {"x": "a" * (limit - filler + 1)}
    assert isinstance(verify(make_jwt(claims(now, **{claim: fits}))), Principal)
    assert rejected(verify(make_jwt(claims(now, **{claim: too_big})))) == (
        "invalid",
        f"{claim} is larger than {limit} bytes",
    )


@pytest.mark.parametrize("claim", ["metadata", "peerMetadata"])
def test_metadata_must_be_an_object(claim: str) -> None:
    assert rejected(verify(make_jwt(claims(time.time(), **{claim: [1]})))) == (
        "invalid",
        f"{claim} must be an object",
    )


def test_minted_tokens_verify() -> None:
    keys = key_ring()
    key = keys.secret(KID)
    assert key is not None
    now = int(time.time())
    token = mint_token(
        key,
        "bob",
        expires_at=now + 60,
        issued_at=now,
        channels=["room-1"],
        permissions=["subscribe"],
        metadata={"a": 1},
        peer_metadata={"b": 2},
    )
    result = verify_token(token, keys, now)
    assert isinstance(result, Principal)
    assert (result.peer_id, result.expires_at, result.actions) == (
        "bob",
        now + 60,
        frozenset({"subscribe"}),
    )
    assert result.scope.allows_channel("room-1") and not result.scope.allows_channel("room-2")


def test_publishable_keys_cannot_mint() -> None:
    key = key_ring().get("pk_live_open")
    assert key is not None
    with pytest.raises(ValueError, match="only secret keys"):
        mint_token(key, "bob", expires_at=1, issued_at=0)
