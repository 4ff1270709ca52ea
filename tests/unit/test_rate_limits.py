"""Rate limiters: fixed windows aligned to the epoch, Retry-After in whole seconds, and the Redis
limiter counting in memory (without a 5xx or a long wait) while Redis does not answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import pytest

from topup.adapters.clock import FixedClock
from topup.adapters.rate_limits import MemoryRateLimiter
from topup.adapters.redis_rate_limits import RedisRateLimiter, redis_client

START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)  # a whole minute: a window starts here
TIMEOUT_S = 0.05


async def hits(limiter: MemoryRateLimiter | RedisRateLimiter, count: int, **rule: int) -> list[int]:
    return [
        await limiter.hit("card_lookup", "ip:203.0.113.7", limit=rule["limit"], window_s=60)
        for _ in range(count)
    ]


async def test_requests_up_to_the_limit_are_allowed_and_the_next_is_refused() -> None:
    limiter = MemoryRateLimiter(FixedClock(START))
    answers = await hits(limiter, 4, limit=3)
    assert answers[:3] == [0, 0, 0]
    assert answers[3] > 0


async def test_retry_after_counts_the_whole_seconds_left_in_the_window() -> None:
    clock = FixedClock(START)
    limiter = MemoryRateLimiter(clock)
    await hits(limiter, 1, limit=1)
    clock.advance(20.5)
    assert await hits(limiter, 1, limit=1) == [40]  # 39.5 s left, rounded up
    clock.advance(39.2)
    assert await hits(limiter, 1, limit=1) == [1]  # never 0 for a refusal


async def test_a_new_window_counts_from_zero_again() -> None:
    clock = FixedClock(START)
    limiter = MemoryRateLimiter(clock)
    assert (await hits(limiter, 3, limit=2))[2] > 0
    clock.advance(60)
    assert await hits(limiter, 2, limit=2) == [0, 0]


async def test_windows_are_aligned_to_the_epoch_not_to_the_first_request() -> None:
    clock = FixedClock(START + dt.timedelta(seconds=59))
    limiter = MemoryRateLimiter(clock)
    assert await hits(limiter, 2, limit=1) == [0, 1]
    clock.advance(1)  # 08:01:00, a new window, though the first request was a second ago
    assert await hits(limiter, 1, limit=1) == [0]


async def test_rules_and_keys_are_counted_apart() -> None:
    limiter = MemoryRateLimiter(FixedClock(START))
    assert await limiter.hit("login", "ip:a", limit=1, window_s=60) == 0
    assert await limiter.hit("login", "ip:b", limit=1, window_s=60) == 0
    assert await limiter.hit("card_lookup", "ip:a", limit=1, window_s=60) == 0
    assert await limiter.hit("login", "ip:a", limit=1, window_s=60) > 0


async def test_the_oldest_counters_are_forgotten_beyond_the_maximum() -> None:
    limiter = MemoryRateLimiter(FixedClock(START), counters_max=2)
    assert await limiter.hit("login", "ip:a", limit=1, window_s=60) == 0
    await limiter.hit("login", "ip:b", limit=1, window_s=60)
    await limiter.hit("login", "ip:c", limit=1, window_s=60)  # ip:a is forgotten
    assert await limiter.hit("login", "ip:a", limit=1, window_s=60) == 0
    assert await limiter.hit("login", "ip:c", limit=1, window_s=60) > 0


class SilentServer:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read()  # until the client gives up and closes
        writer.close()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def silent_redis() -> AsyncIterator[SilentServer]:
    server = SilentServer()
    yield server
    await server.stop()


async def test_the_redis_limiter_counts_in_memory_when_redis_does_not_answer(
    silent_redis: SilentServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = await silent_redis.start()
    limiter = RedisRateLimiter.from_url(url, FixedClock(START), timeout_s=TIMEOUT_S)
    try:
        with caplog.at_level(logging.WARNING, logger="topup.rate_limits"):
            async with asyncio.timeout(2):
                answers = await hits(limiter, 3, limit=2)
    finally:
        await limiter.aclose()
    assert answers[:2] == [0, 0]
    assert answers[2] == 60
    warnings = [record for record in caplog.records if "Redis is unavailable" in record.message]
    assert len(warnings) == 1  # one warning per outage, not one per request


async def test_a_failed_redis_is_asked_again_only_after_the_retry_delay(
    silent_redis: SilentServer,
) -> None:
    url = await silent_redis.start()
    monotonic = [1000.0]
    limiter = RedisRateLimiter(
        redis_client(url, timeout_s=TIMEOUT_S),
        FixedClock(START),
        timeout_s=TIMEOUT_S,
        retry_after_failure_s=5,
        monotonic=lambda: monotonic[0],
    )
    try:
        await hits(limiter, 3, limit=10)
        assert silent_redis.connections == 1  # the first request tried Redis; the others did not
        monotonic[0] += 5
        await hits(limiter, 1, limit=10)
        assert silent_redis.connections == 2
    finally:
        await limiter.aclose()
