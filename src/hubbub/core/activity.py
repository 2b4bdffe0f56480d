"""How busy each channel is: publications counted where they are published, rates at read time.

The hot path pays two dict lookups and an integer increment per publish (never a clock read,
a timer or a task). A rate is worked out only when someone asks (the channel listing): each
read leaves a (time, count) sample behind, at most one per ``SAMPLE_EVERY_S``, and the rate is
the count since the newest sample that is at least ``WINDOW_S`` old (or since the counter was
made). Counting happens on the node that published, so the cluster-wide rate of a channel is
the sum of every node's rate.

Memory stays bounded: a read forgets channels that have been quiet for a whole window, and a
new channel beyond ``max_tracked`` first sweeps out every channel that published nothing since
the previous sweep (so a node that is never read from keeps only recently active channels: at
most about twice ``max_tracked``, unless more than that many are busy at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

WINDOW_S: Final = 5.0
SAMPLE_EVERY_S: Final = 1.0
# A counter made a moment ago has published a few messages over almost no time: no rate is
# worked out over less than this.
MIN_SPAN_S: Final = 1.0
MAX_TRACKED_CHANNELS: Final = 10_000


class _Counter:
    __slots__ = ("count", "samples", "swept")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.swept = 0  # the count at the previous sweep
        self.samples: list[tuple[float, int]] = [(now, 0)]

    def rate(self, now: float) -> float:
        samples = self.samples
        if now - samples[-1][0] >= SAMPLE_EVERY_S:
            samples.append((now, self.count))
        # Keep one sample at least a window old as the anchor, drop the ones before it.
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_S:
            del samples[0]
        since, then = samples[0]
        return (self.count - then) / max(now - since, MIN_SPAN_S)

    def idle(self, now: float) -> bool:
        """Nothing published since the anchor, and the anchor is a whole window old."""
        since, then = self.samples[0]
        return self.count == then and now - since >= WINDOW_S


class ChannelActivity:
    def __init__(self, clock: Callable[[], float], max_tracked: int = MAX_TRACKED_CHANNELS) -> None:
        self._clock = clock
        self._apps: dict[str, dict[str, _Counter]] = {}
        self._tracked = 0
        self._max_tracked = max_tracked

    def published(self, app_id: str, channel: str) -> None:
        """One publication on ``channel`` (the hot path)."""
        channels = self._apps.get(app_id)
        if channels is not None:
            counter = channels.get(channel)
            if counter is not None:
                counter.count += 1
                return
        self._first(app_id, channel).count += 1

    def _first(self, app_id: str, channel: str) -> _Counter:
        if self._tracked >= self._max_tracked:
            self._sweep()
        counter = _Counter(self._clock())
        self._apps.setdefault(app_id, {})[channel] = counter
        self._tracked += 1
        return counter

    def _sweep(self) -> None:
        for app_id, channels in list(self._apps.items()):
            for channel, counter in list(channels.items()):
                if counter.count == counter.swept:
                    del channels[channel]
                    self._tracked -= 1
                else:
                    counter.swept = counter.count
            if not channels:
                del self._apps[app_id]
        if self._tracked >= self._max_tracked * 0.9:
            # Everything tracked is busy: let the table grow rather than sweep on every
            # new channel (it is swept again once it doubled).
            self._max_tracked *= 2

    def rates(self, app_id: str, prefix: str | None = None) -> Iterator[tuple[str, float]]:
        """The app's recently busy channels (optionally by name prefix) and their rates in
        publications per second; channels quiet for a whole window are forgotten."""
        channels = self._apps.get(app_id)
        if not channels:
            return
        now = self._clock()
        for channel, counter in list(channels.items()):
            if counter.idle(now):
                del channels[channel]
                self._tracked -= 1
                continue
            if prefix is None or channel.startswith(prefix):
                yield channel, counter.rate(now)
        if not channels:
            self._apps.pop(app_id, None)

    @property
    def tracked(self) -> int:
        return self._tracked
