"""The Redis rate limiter on a real Redis (TOPUP_TEST_REDIS_URL): limiters with their own
connections, like server processes, share one count per window; no count is lost when they hit at
once; each counter expires when its window ends. Each test uses its own rule name and deletes
only the keys under it."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from topup.adapters.clock import FixedClock
from topup.adapters.redis_rate_limits import KEY_NAMESPACE, RedisRateLimiter

START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)  # a whole minute: a window starts here
WINDOW_S = 60
KEY = "ip:203.0.113.7"


@pytest.fixture
def rule() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, rule: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    found = [key async for key in client.scan_iter(match=f"{KEY_NAMESPACE}:{rule}*")]
    if found:
        await client.delete(*found)
    await client.aclose()


@pytest.fixture
async def limiters(redis_url: str, redis: Redis) -> AsyncIterator[tuple[RedisRateLimiter, ...]]:
    """Two limiters, each with its own connections and clock, as two server processes have."""
    clocks = (FixedClock(START), FixedClock(START))
    built = tuple(RedisRateLimiter.from_url(redis_url, clock) for clock in clocks)
    yield built
    for limiter in built:
        await limiter.aclose()


async def test_two_limiters_on_one_redis_share_one_count(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter], rule: str
) -> None:
    first, second = limiters
    answers = [
        await (first if index % 2 == 0 else second).hit(rule, KEY, limit=5, window_s=WINDOW_S)
        for index in range(7)
    ]
    assert answers[:5] == [0] * 5
    assert answers[5] == answers[6] == WINDOW_S  # the 6th of all, not the 11th


async def test_retry_after_counts_the_whole_seconds_left_in_the_window(
    redis_url: str, redis: Redis, rule: str
) -> None:
    clock = FixedClock(START + dt.timedelta(seconds=20.5))
    limiter = RedisRateLimiter.from_url(redis_url, clock)
    try:
        assert await limiter.hit(rule, KEY, limit=1, window_s=WINDOW_S) == 0
        assert await limiter.hit(rule, KEY, limit=1, window_s=WINDOW_S) == 40
        clock.advance(39.5)  # 08:01:00, a new window
        assert await limiter.hit(rule, KEY, limit=1, window_s=WINDOW_S) == 0
    finally:
        await limiter.aclose()


async def test_rules_and_keys_are_counted_apart(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter], rule: str
) -> None:
    first, _ = limiters
    assert await first.hit(rule, "ip:a", limit=1, window_s=WINDOW_S) == 0
    assert await first.hit(rule, "ip:b", limit=1, window_s=WINDOW_S) == 0
    assert await first.hit(f"{rule}_other", "ip:a", limit=1, window_s=WINDOW_S) == 0
    assert await first.hit(rule, "ip:a", limit=1, window_s=WINDOW_S) > 0


async def test_hits_at_the_same_time_from_two_limiters_are_all_counted(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter], rule: str
) -> None:
    first, second = limiters
    answers = await asyncio.gather(
        *(
            limiter.hit(rule, KEY, limit=30, window_s=WINDOW_S)
            for _ in range(25)
            for limiter in (first, second)
        )
    )
    assert sum(1 for answer in answers if answer == 0) == 30
    assert sum(1 for answer in answers if answer > 0) == 20


async def test_each_counter_is_namespaced_and_expires_when_its_window_ends(
    redis_url: str, redis: Redis, rule: str
) -> None:
    clock = FixedClock(START + dt.timedelta(seconds=45))
    limiter = RedisRateLimiter.from_url(redis_url, clock)
    try:
        await limiter.hit(rule, KEY, limit=5, window_s=WINDOW_S)
        await limiter.hit(rule, KEY, limit=5, window_s=WINDOW_S)
    finally:
        await limiter.aclose()
    window = int(clock.now().timestamp()) // WINDOW_S
    counter = f"topup:rate:{rule}:{KEY}:{window}"
    assert await redis.get(counter) == b"2"
    assert 0 < await redis.ttl(counter) <= 15 + 1  # the 15 s left, and a second of margin
