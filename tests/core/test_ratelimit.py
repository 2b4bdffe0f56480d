"""TokenBucket and KeyedRateLimiter (per-connection rate and per-IP connect limit)."""

from __future__ import annotations

from hubbub.core.ratelimit import KeyedRateLimiter, TokenBucket


def test_bucket_starts_full_and_refills_up_to_capacity() -> None:
    bucket = TokenBucket(capacity=2, refill_per_s=4, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.25)  # exactly one token back
    assert not bucket.take(0.25)
    assert not bucket.is_full(0.5)
    assert bucket.is_full(0.75)
    # A long idle refills to capacity, never beyond.
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_bucket_ignores_a_clock_that_goes_backwards() -> None:
    bucket = TokenBucket(capacity=1, refill_per_s=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert bucket.take(11.0)


def test_bucket_cost() -> None:
    bucket = TokenBucket(capacity=3, refill_per_s=1, now=0.0)
    assert not bucket.take(0.0, cost=4)
    assert bucket.take(0.0, cost=3)


def test_keyed_limiter_limits_each_key_separately() -> None:
    limiter = KeyedRateLimiter(capacity=2, refill_per_s=1)
    assert limiter.enabled
    assert [limiter.allow("1.2.3.4", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("5.6.7.8", 0.0)
    assert limiter.allow("1.2.3.4", 1.0)
    assert not limiter.allow("1.2.3.4", 1.0)


def test_keyed_limiter_sixty_per_minute() -> None:
    limiter = KeyedRateLimiter(capacity=60, refill_per_s=60 / 60.0)
    assert all(limiter.allow("ip", 0.0) for _ in range(60))
    assert not limiter.allow("ip", 0.0)
    assert limiter.allow("ip", 1.0)


def test_keyed_limiter_disabled_with_zero_capacity() -> None:
    limiter = KeyedRateLimiter(capacity=0, refill_per_s=0)
    assert not limiter.enabled
    assert all(limiter.allow("ip", 0.0) for _ in range(1000))


def test_keyed_limiter_prunes_only_full_buckets_when_at_its_key_cap() -> None:
    limiter = KeyedRateLimiter(capacity=2, refill_per_s=1, max_keys=2)
    assert limiter.allow("busy", 0.0)
    assert limiter.allow("busy", 0.0)  # empty now
    assert limiter.allow("idle", 0.0)
    # At the cap: a third key prunes the buckets that are full again by now.
    assert limiter.allow("new", 0.5)  # "idle" is still not full, "busy" neither: none pruned
    assert not limiter.allow("busy", 0.5)  # busy kept its state (not pruned)
    assert limiter.allow("other", 10.0)  # everything full by now: pruned, then added
    assert limiter.allow("busy", 10.0) and limiter.allow("busy", 10.0)
    assert not limiter.allow("busy", 10.0)


def test_would_allow_looks_without_using_anything_up() -> None:
    """What a limiter counting only failures needs: look before, charge after a failure."""
    limiter = KeyedRateLimiter(capacity=2, refill_per_s=1)
    assert all(limiter.would_allow("ip", 0.0) for _ in range(100))
    assert limiter.allow("ip", 0.0) and limiter.allow("ip", 0.0)
    assert not limiter.would_allow("ip", 0.0)
    assert not limiter.would_allow("ip", 0.5)
    assert limiter.would_allow("ip", 1.0)  # one token back
    assert limiter.would_allow("other", 0.0)
    assert KeyedRateLimiter(capacity=0, refill_per_s=0).would_allow("ip", 0.0)
    bucket = TokenBucket(capacity=1, refill_per_s=1, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.has_token(0.5)
    assert bucket.has_token(1.0)
    assert not bucket.take(0.5)  # has_token took nothing: the half token is still short
