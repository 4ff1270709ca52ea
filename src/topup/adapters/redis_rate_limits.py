"""Fixed-window request counters in Redis, shared by every server process that uses the same
Redis database (``TOPUP_REDIS_URL``).

Each window of each rule and key is one Redis counter, ``topup:rate:{name}:{key}:{window}``,
counted with INCR and given an expiry at the window's end in one MULTI/EXEC transaction, so that
concurrent processes never lose a count and no counter outlives its window.

Redis is a help, not a dependency: when it does not answer within ``socket_timeout_s`` the
request is counted by this process's own ``MemoryRateLimiter`` instead (a warning is logged), and
Redis is not asked again for ``retry_after_failure_s``, so that an outage neither turns into 5xx
answers nor adds a timeout to every request. During that time each process counts on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from topup.adapters.rate_limits import (
    MemoryRateLimiter,
    seconds_until_window_ends,
    window_number,
)
from topup.ports import Clock, RateLimiter

logger = logging.getLogger("topup.rate_limits")

KEY_NAMESPACE = "topup:rate"
REDIS_SOCKET_TIMEOUT_S = 0.25  # connect, and each command; a rate limit must not slow requests
REDIS_RETRY_AFTER_FAILURE_S = 5.0  # how long a failed Redis is left alone (memory counts meanwhile)
EXPIRY_MARGIN_S = 1  # a counter outlives its window by this much, for clocks a little apart


def redis_client(url: str, *, timeout_s: float = REDIS_SOCKET_TIMEOUT_S) -> Redis:
    """A client that gives up after ``timeout_s`` and does not retry: the fallback is the retry."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class RedisRateLimiter:
    def __init__(
        self,
        client: Redis,
        clock: Clock,
        *,
        fallback: RateLimiter | None = None,
        namespace: str = KEY_NAMESPACE,
        timeout_s: float = REDIS_SOCKET_TIMEOUT_S,
        retry_after_failure_s: float = REDIS_RETRY_AFTER_FAILURE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._clock = clock
        self._fallback = fallback if fallback is not None else MemoryRateLimiter(clock)
        self._namespace = namespace
        self._timeout_s = timeout_s
        self._retry_after_failure_s = retry_after_failure_s
        self._monotonic = monotonic
        self._failed_at: float | None = None  # when Redis last failed; None while it answers

    @classmethod
    def from_url(
        cls, url: str, clock: Clock, *, timeout_s: float = REDIS_SOCKET_TIMEOUT_S
    ) -> RedisRateLimiter:
        """A limiter on the Redis at ``url`` (redis://host:port/db). Nothing connects until the
        first request is counted."""
        return cls(redis_client(url, timeout_s=timeout_s), clock, timeout_s=timeout_s)

    def counter_key(self, name: str, key: str, window: int) -> str:
        return f"{self._namespace}:{name}:{key}:{window}"

    async def hit(self, name: str, key: str, *, limit: int, window_s: int) -> int:
        if self._failed_recently():
            return await self._fallback.hit(name, key, limit=limit, window_s=window_s)
        now_s = self._clock.now().timestamp()
        window = window_number(now_s, window_s)
        counter = self.counter_key(name, key, window)
        expiry_s = seconds_until_window_ends(now_s, window, window_s) + EXPIRY_MARGIN_S
        try:
            async with asyncio.timeout(self._timeout_s * 2):  # connect + command, at most
                async with self._client.pipeline(transaction=True) as pipeline:
                    pipeline.incr(counter)
                    pipeline.expire(counter, expiry_s)
                    count, _ = await pipeline.execute()
        except (RedisError, OSError, TimeoutError) as error:
            self._note_failure(error)
            return await self._fallback.hit(name, key, limit=limit, window_s=window_s)
        if self._failed_at is not None:
            self._failed_at = None
            logger.warning("Redis answers again: rate limits are shared again")
        if int(count) <= limit:
            return 0
        return seconds_until_window_ends(now_s, window, window_s)

    def _failed_recently(self) -> bool:
        return (
            self._failed_at is not None
            and self._monotonic() - self._failed_at < self._retry_after_failure_s
        )

    def _note_failure(self, error: BaseException) -> None:
        if self._failed_at is None:
            logger.warning(
                "Redis is unavailable (%s: %s): rate limits are counted in this process "
                "alone; Redis is tried again every %.0f s",
                type(error).__name__,
                error,
                self._retry_after_failure_s,
            )
        self._failed_at = self._monotonic()

    async def aclose(self) -> None:
        await self._client.aclose()
