"""Fixed-window request counters in this process's memory: the default rate limiter. Several
server processes need the Redis one (``adapters.redis_rate_limits``) to share their counts."""

from __future__ import annotations

from collections import OrderedDict

from topup.ports import Clock

COUNTERS_MAX = 100_000  # windows remembered at once; the oldest are forgotten first


class MemoryRateLimiter:
    def __init__(self, clock: Clock, *, counters_max: int = COUNTERS_MAX) -> None:
        self._clock = clock
        self._counters_max = counters_max
        # (name, key, window number) -> requests counted in that window
        self._counts: OrderedDict[tuple[str, str, int], int] = OrderedDict()

    async def hit(self, name: str, key: str, *, limit: int, window_s: int) -> int:
        now = self._clock.now().timestamp()
        window = int(now // window_s)
        counter = (name, key, window)
        count = self._counts.pop(counter, 0) + 1
        self._counts[counter] = count
        while len(self._counts) > self._counters_max:
            self._counts.popitem(last=False)
        if count <= limit:
            return 0
        return max(1, int((window + 1) * window_s - now + 0.999))
