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


# --- stalls the server imposed (TokenBucket.excuse) -----------------------------------------
# Burst 10, refill 5/s; "the client" sends 4 frames/s, below the rate, throughout. The server
# reads it in real time, then one frame's handling keeps it from reading for 4 s (the broker
# did not answer): the 16 frames sent meanwhile are read at once when the stall ends.


def steady_then_stalled(bucket: TokenBucket, stall_s: float = 4.0) -> float:
    """Frames read as sent at 4/s for 1 s, the last one stalling ``stall_s``: the stall's end."""
    for i in range(5):
        assert bucket.take(i * 0.25)
    end = 1.0 + stall_s
    bucket.excuse(stall_s, end)
    return end


def test_a_backlog_sent_below_the_rate_during_a_server_stall_is_not_a_burst() -> None:
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    end = steady_then_stalled(bucket)
    assert all(bucket.take(end) for _ in range(16))  # charged as if read when sent
    # ... and the client goes on at 4/s.
    assert all(bucket.take(end + 0.25 * (i + 1)) for i in range(40))


def test_without_the_excuse_the_same_backlog_empties_the_bucket() -> None:
    """What the bug was: the bucket charges at read time, so the backlog looks like a burst."""
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    for i in range(5):
        assert bucket.take(i * 0.25)
    assert [bucket.take(5.0) for _ in range(16)].count(False) == 6


def test_a_flood_during_a_server_stall_still_empties_the_bucket() -> None:
    """The allowance is what the bucket held when the stall began (9) plus the refill of the
    stall (5/s x 4 s): 29 frames; a client that sent 15/s meanwhile (60) runs it empty."""
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    end = steady_then_stalled(bucket)
    outcomes = [bucket.take(end) for _ in range(60)]
    assert outcomes.index(False) == 29


def test_allowance_not_used_during_a_stall_is_not_kept_for_later_bursts() -> None:
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    end = steady_then_stalled(bucket)  # the client sent nothing during the stall
    # 4 s of reading again: the raised ceiling is back at the capacity (it falls at 5/s).
    later = end + 4.0
    assert [bucket.take(later) for _ in range(11)].count(False) == 1
    # Halfway, half of the raise is left (the frames a late backlog could still hold).
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    end = steady_then_stalled(bucket)
    assert [bucket.take(end + 2.0) for _ in range(21)].count(False) == 1


def test_consecutive_stalls_add_up_while_the_server_hardly_reads() -> None:
    """A lossy link: every frame waits 1 s for the broker, the client sends 4/s, so the
    backlog grows by 3 frames a second; when the link heals it is read at once."""
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    now = 0.0
    for _ in range(20):  # one frame read per second, each stalling 1 s
        assert bucket.take(now)
        now += 1.0
        bucket.excuse(1.0, now)
    backlog = 20 * 4 - 20
    assert all(bucket.take(now) for _ in range(backlog))


def test_a_healthy_brokers_short_stalls_do_not_raise_the_burst() -> None:
    """Each frame waits ~8 ms, 250 ms apart: the raise falls faster than it grows."""
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0)
    now = 0.0
    for _ in range(100):
        assert bucket.take(now)
        bucket.excuse(1 / 128, now + 1 / 128)
        now += 0.25
    assert [bucket.take(now) for _ in range(11)].count(False) == 1


def test_the_excused_stall_is_bounded() -> None:
    bucket = TokenBucket(capacity=10, refill_per_s=5, now=0.0, max_excused_s=10.0)
    assert bucket.take(0.0)
    bucket.excuse(100.0, 100.0)  # a 100 s stall excuses 10 s of refill: 10 + 50 frames
    assert [bucket.take(100.0) for _ in range(61)].count(False) == 1
    assert not bucket.has_token(100.0)
    assert bucket.has_token(100.2)


def test_no_refill_nothing_to_excuse() -> None:
    bucket = TokenBucket(capacity=2, refill_per_s=0, now=0.0)
    bucket.excuse(10.0, 10.0)
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]
