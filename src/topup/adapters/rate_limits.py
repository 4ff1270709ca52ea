"""Fixed-window request counters in this process's memory: the default rate limiter. Several
server processes need the Redis one (``adapters.redis_rate_limits``) to share their counts.

A rule allows ``limit`` requests per key in each window of ``window_s`` seconds; windows are
numbered from the Unix epoch (``now // window_s``), so every process agrees on where one ends.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from topup.ports import Clock

COUNTERS_MAX = 100_000  # windows remembered at once; the oldest are forgotten first


def window_number(now_s: float, window_s: int) -> int:
    return int(now_s // window_s)


def seconds_until_window_ends(now_s: float, window: int, window_s: int) -> int:
    """The Retry-After of a refused request: whole seconds, at least 1."""
    return max(1, math.ceil((window + 1) * window_s - now_s))


class MemoryRateLimiter:
    def __init__(self, clock: Clock, *, counters_max: int = COUNTERS_MAX) -> None:
        self._clock = clock
        self._counters_max = counters_max
        # (name, key, window number) -> requests counted in that window
        self._counts: OrderedDict[tuple[str, str, int], int] = OrderedDict()

    async def hit(self, name: str, key: str, *, limit: int, window_s: int) -> int:
        now_s = self._clock.now().timestamp()
        window = window_number(now_s, window_s)
        counter = (name, key, window)
        count = self._counts.pop(counter, 0) + 1
        self._counts[counter] = count
        while len(self._counts) > self._counters_max:
            self._counts.popitem(last=False)
        if count <= limit:
            return 0
        return seconds_until_window_ends(now_s, window, window_s)
