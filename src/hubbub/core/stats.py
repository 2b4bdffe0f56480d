"""Plain counters the node keeps about itself; exporters (Prometheus) read them on demand.

Counting is an integer increment per event (per publish, not per recipient), so the fan-out
hot path pays nothing measurable, and core stays free of any metrics library.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class NodeStats:
    connections_opened: int = 0
    connections_refused: int = 0  # over the app's concurrent-connection cap (4010)
    frames_received: int = 0
    publications: int = 0  # client publishes handed to the broker
    deliveries: int = 0  # message frames queued to local connections (all publishers)
    directs: int = 0  # direct sends that reached at least one connection
    errors: Counter[str] = field(default_factory=Counter)  # error frames by code
    closes: Counter[int] = field(default_factory=Counter)  # closes the node decided, by code
