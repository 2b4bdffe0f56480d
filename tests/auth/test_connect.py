"""authenticate(): which credentials give a principal, an HTTP 401, or a close before welcome."""

from __future__ import annotations

import time
import uuid

import pytest

from hubbub.auth.client_ip import TrustedProxies, client_ip
from hubbub.auth.connect import CloseRejection, HttpRejection, authenticate
from hubbub.core.principal import Principal
from hubbub.protocol.codes import CloseCode
from tests.auth.jwt_helpers import key_ring, make_jwt


def connect(
    key: str | None = None, token: str | None = None, origin: str | None = None
) -> Principal | HttpRejection | CloseRejection:
    return authenticate(key_ring(), key, token, origin, time.time())


def good_token() -> str:
    return make_jwt({"sub": "alice", "exp": int(time.time()) + 3600})


def test_publishable_key_gets_a_fresh_uuid_peer_id_each_time() -> None:
    first, second = connect(key="pk_live_open"), connect(key="pk_live_open")
    assert isinstance(first, Principal) and isinstance(second, Principal)
    assert first.peer_id != second.peer_id
    assert str(uuid.UUID(first.peer_id)) == first.peer_id
    assert (first.app_id, first.key_id, first.expires_at) == ("app1", "pk_live_open", None)
    assert first.peer_metadata is None and first.welcome_metadata is None
    # A publishable key without explicit actions has "send" off, as on the hosted service.
    assert first.actions == frozenset({"publish", "subscribe", "presence"})


def test_publishable_key_scope_comes_from_its_patterns() -> None:
    result = connect(key="pk_live_origins")
    assert isinstance(result, Principal)
    assert result.scope.allows_channel("room-1") and not result.scope.allows_channel("lobby")
    assert result.actions == frozenset({"subscribe", "presence"})


@pytest.mark.parametrize(
    ("key", "token"),
    [(None, None), ("pk_live_open", "x.y.z"), ("", ""), ("pk_live_open", "")],
)
def test_key_and_token_together_or_neither_close_4001(key: str | None, token: str | None) -> None:
    assert connect(key=key, token=token) == CloseRejection(
        CloseCode.INVALID_TOKEN, "exactly one of key or token is required"
    )


@pytest.mark.parametrize("key", ["pk_live_nope", "sk_id_test", ""])
def test_unknown_or_non_publishable_key_closes_4001(key: str) -> None:
    assert connect(key=key) == CloseRejection(CloseCode.INVALID_TOKEN, "unknown key")


def test_origin_check() -> None:
    assert connect(key="pk_live_origins", origin="https://evil.example") == HttpRejection(
        401, "origin_not_allowed"
    )
    # Exact strings: scheme and port matter.
    assert connect(key="pk_live_origins", origin="http://good.example") == HttpRejection(
        401, "origin_not_allowed"
    )
    assert connect(key="pk_live_origins", origin="http://localhost:3001") == HttpRejection(
        401, "origin_not_allowed"
    )
    assert isinstance(connect(key="pk_live_origins", origin="https://good.example"), Principal)
    assert isinstance(connect(key="pk_live_origins", origin="http://localhost:3000"), Principal)
    # Non-browser clients send no Origin header: allowed (decision 11).
    assert isinstance(connect(key="pk_live_origins", origin=None), Principal)
    # A key without allowed_origins accepts any origin.
    assert isinstance(connect(key="pk_live_open", origin="https://anything.example"), Principal)


def test_token_outcomes() -> None:
    result = connect(token=good_token())
    assert isinstance(result, Principal) and result.peer_id == "alice"
    assert connect(token="not a jwt") == HttpRejection(401, "invalid_token")
    expired = make_jwt({"sub": "alice", "exp": int(time.time()) - 10})
    assert connect(token=expired) == CloseRejection(CloseCode.TOKEN_EXPIRED, "token expired")
    bad_signature = make_jwt({"sub": "alice", "exp": int(time.time()) + 60}, secret="nope")
    outcome = connect(token=bad_signature)
    assert isinstance(outcome, CloseRejection) and outcome.code == 4001
    unknown_kid = make_jwt({"sub": "alice", "exp": int(time.time()) + 60}, kid="sk_id_x")
    assert connect(token=unknown_kid) == CloseRejection(CloseCode.INVALID_TOKEN, "unknown kid")


def test_origin_is_not_checked_for_tokens() -> None:
    assert isinstance(connect(token=good_token(), origin="https://evil.example"), Principal)


# --- client_ip ------------------------------------------------------------------------------


def test_client_ip_without_trusted_proxies_is_the_socket_peer() -> None:
    none = TrustedProxies([])
    assert client_ip("1.2.3.4", "9.9.9.9", none) == "1.2.3.4"
    assert client_ip(None, None, none) == "unknown"
    assert "1.2.3.4" not in none


def test_client_ip_through_trusted_proxies() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "::1", "192.168.1.1"])
    # The nearest hop nobody we trust vouches for, walking right to left.
    assert client_ip("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.7", trusted) == "1.2.3.4"
    assert client_ip("::1", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_ip("192.168.1.1", " 5.5.5.5 ,", trusted) == "5.5.5.5"
    # Only proxies in the chain: the first (client-most) address.
    assert client_ip("10.0.0.1", "10.0.0.2, 10.0.0.3", trusted) == "10.0.0.2"
    # A trusted proxy without the header, or with an empty one: the proxy itself.
    assert client_ip("10.0.0.1", None, trusted) == "10.0.0.1"
    assert client_ip("10.0.0.1", " , ", trusted) == "10.0.0.1"
    # An untrusted peer cannot pick its own address.
    assert client_ip("8.8.8.8", "1.2.3.4", trusted) == "8.8.8.8"


def test_trusted_proxies_ignore_garbage_addresses() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    assert "not-an-ip" not in trusted
    assert "10.1.2.3" in trusted
    assert "11.0.0.1" not in trusted
    assert client_ip("10.0.0.1", "not-an-ip", trusted) == "not-an-ip"


def test_trusted_proxies_accept_host_bits_in_networks() -> None:
    assert "10.0.0.9" in TrustedProxies(["10.0.0.1/24"])
