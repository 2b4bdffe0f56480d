"""Channel rates: counted per publication, worked out at read time, memory bounded."""

from __future__ import annotations

import pytest

from hubbub.core.activity import WINDOW_S, ChannelActivity
from tests.support.clock import FakeClock


def rates(activity: ChannelActivity, app_id: str = "app", prefix: str | None = None) -> dict:
    return dict(activity.rates(app_id, prefix))


def test_a_steady_rate_is_measured_over_the_window() -> None:
    clock = FakeClock(1000.0)
    activity = ChannelActivity(clock)
    for _ in range(60):  # 10 publications per second for 6 s, read every second
        for _ in range(10):
            activity.published("app", "room")
        clock.now += 1.0
        rates(activity)
    assert rates(activity)["room"] == pytest.approx(10.0)


def test_the_rate_falls_to_zero_and_a_quiet_channel_is_forgotten() -> None:
    clock = FakeClock(1000.0)
    activity = ChannelActivity(clock)
    for _ in range(20):
        activity.published("app", "room")
    clock.now += 2.0
    assert rates(activity)["room"] == pytest.approx(10.0)  # 20 over 2 s
    clock.now += WINDOW_S + 0.5
    assert rates(activity)["room"] == pytest.approx(0.0)
    clock.now += WINDOW_S + 0.5
    assert rates(activity) == {}
    assert activity.tracked == 0
    activity.published("app", "room")  # counted again from scratch
    assert activity.tracked == 1


def test_a_fresh_counter_never_reports_more_than_its_count_per_second() -> None:
    clock = FakeClock(1000.0)
    activity = ChannelActivity(clock)
    for _ in range(5):
        activity.published("app", "burst")
    clock.now += 0.01
    assert rates(activity)["burst"] == pytest.approx(5.0)


def test_apps_are_separate_and_the_prefix_filters() -> None:
    clock = FakeClock(1000.0)
    activity = ChannelActivity(clock)
    activity.published("app", "chat/a")
    activity.published("app", "devices/1/events")
    activity.published("other", "chat/b")
    clock.now += 1.0
    assert set(rates(activity, prefix="chat/")) == {"chat/a"}
    assert set(rates(activity, "other")) == {"chat/b"}
    assert rates(activity, "nobody") == {}


def test_memory_is_bounded_by_sweeping_channels_that_went_quiet() -> None:
    clock = FakeClock(1000.0)
    activity = ChannelActivity(clock, max_tracked=100)
    for i in range(10_000):  # one publication each: a million-device fleet in miniature
        activity.published("app", f"devices/{i}/events")
        # A sweep keeps what published since the previous one: at most twice the bound.
        assert activity.tracked <= 200
    busy = "devices/999/events"
    for _ in range(3):
        for i in range(100):
            activity.published("app", f"new/{i}")
        activity.published("app", busy)
    assert busy in rates(activity)


def test_a_table_of_busy_channels_grows_instead_of_sweeping_each_time() -> None:
    clock = FakeClock(1000.0)
    activity = ChannelActivity(clock, max_tracked=10)
    for round_ in range(3):
        for i in range(15):
            activity.published("app", f"c{i}")
        assert activity.tracked == 15, round_
