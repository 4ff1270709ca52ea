"""Client addresses (issue 9, A7): ``X-Forwarded-For`` is believed only from the proxies of
``TOPUP_TRUSTED_PROXIES`` (none by default, also in `topup serve`, where uvicorn alone would
trust 127.0.0.1), and IPv6 clients are counted per /64; plus a real server's answer to an
oversized chunked body (A10)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import conftest
from tests.conftest import AppFactory
from tests.e2e.api.conftest import client_for
from tests.e2e.api.test_shared_rate_limits import (
    SERVER_START_S_MAX,
    Server,
    free_port,
    run_json,
)
from topup.bootstrap import Application
from topup.entrypoints.http.client import counted_address
from topup.entrypoints.http.request_checks import BODY_BYTES_MAX
from topup.services.demo import load_demo
from topup.settings import LimitSettings, parse_trusted_proxies

LOOKUPS_PER_MINUTE_MAX = 3
TRIES = 10
NUMBERS = itertools.count(3_450_000)
REQUEST_TIMEOUT_S = 10.0


def limited_after_the_allowance(statuses: list[int]) -> bool:
    allowed = statuses[:LOOKUPS_PER_MINUTE_MAX]
    return 429 not in allowed and set(statuses[LOOKUPS_PER_MINUTE_MAX:]) == {429}


def another_number() -> str:
    """A new (unknown) card number each time: the per-card count never stops these look-ups,
    only the per-client one does."""
    return f"+6012{next(NUMBERS):07d}"


async def look_ups(application: Application, address: str, forwarded: list[str]) -> list[int]:
    statuses = []
    async with client_for(application, address) as api:
        for forwarded_for in forwarded:
            answer = await api.get(
                f"/api/v1/cards/{another_number()}/plans",
                headers={"X-Forwarded-For": forwarded_for},
            )
            statuses.append(answer.status_code)
    return statuses


def rotating(count: int) -> list[str]:
    return [f"192.0.2.{index + 1}" for index in range(count)]


async def test_a_rotating_x_forwarded_for_from_localhost_does_not_escape_the_limits(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(card_lookup_per_minute_max=LOOKUPS_PER_MINUTE_MAX))
    await load_demo(application.services)
    statuses = await look_ups(application, "127.0.0.1", rotating(TRIES))
    assert limited_after_the_allowance(statuses), statuses


async def test_a_trusted_proxy_passes_each_client_and_cannot_be_spoofed_through(
    make_app: AppFactory,
) -> None:
    application = make_app(
        limits=LimitSettings(card_lookup_per_minute_max=LOOKUPS_PER_MINUTE_MAX),
        trusted_proxies="10.0.0.0/8, 127.0.0.1",
    )
    await load_demo(application.services)
    # Each client behind the proxy has its own allowance...
    assert await look_ups(application, "127.0.0.1", rotating(TRIES)) == [404] * TRIES
    # ...but what a client writes itself is left of what the proxies append: not believed.
    spoofed = [f"{fake}, 203.0.113.9, 10.1.2.3" for fake in rotating(TRIES)]
    statuses = await look_ups(application, "127.0.0.1", spoofed)
    assert limited_after_the_allowance(statuses), statuses
    # A peer that is not a trusted proxy is the client, whatever it forwards.
    statuses = await look_ups(application, "198.51.100.20", rotating(TRIES))
    assert limited_after_the_allowance(statuses), statuses


async def test_ipv6_addresses_of_one_64_network_share_a_count(make_app: AppFactory) -> None:
    application = make_app(limits=LimitSettings(card_lookup_per_minute_max=LOOKUPS_PER_MINUTE_MAX))
    await load_demo(application.services)
    statuses = []
    for index in range(TRIES):
        statuses += await look_ups(application, f"2001:db8:1:2::{index + 1:x}", [""])
    assert limited_after_the_allowance(statuses), statuses
    assert await look_ups(application, "2001:db8:1:3::1", [""]) == [404]  # another /64


def test_counted_addresses_and_trusted_proxies_are_parsed() -> None:
    assert counted_address("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert counted_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert counted_address("192.0.2.1") == "192.0.2.1"
    assert [str(n) for n in parse_trusted_proxies("127.0.0.1, 10.0.0.0/8 ::1")] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    assert parse_trusted_proxies("") == ()
    with pytest.raises(ValueError, match="not an address"):
        parse_trusted_proxies("localhost")


# --- a real `topup serve` -------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    environment.update(
        TOPUP_DATABASE_URL=f"sqlite:///{tmp_path / 'topup.sqlite3'}",
        TOPUP_SECRET_KEY=conftest._valid_test_key(),
        TOPUP_SANDBOX_JOURNAL="",
        TOPUP_SANDBOX_SMS_OUTBOX="",
        TOPUP_MAIL_OUTBOX=str(tmp_path / "outbox"),
        TOPUP_CARD_LOOKUP_PER_MINUTE_MAX=str(LOOKUPS_PER_MINUTE_MAX),
    )
    run_json(["init", "--demo"], environment, tmp_path)
    started = Server(free_port(), environment, tmp_path)
    try:
        started.wait_until_healthy(time.monotonic() + SERVER_START_S_MAX)
        yield started
    finally:
        started.stop()


def test_topup_serve_believes_no_x_forwarded_for_by_default(server: Server) -> None:
    statuses = []
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for forwarded_for in rotating(TRIES):
            answer = client.get(
                f"/api/v1/cards/{another_number()}/plans",
                headers={"X-Forwarded-For": forwarded_for},
            )
            statuses.append(answer.status_code)
        # A10 over real HTTP: a chunked body (no Content-Length) over the limit is 413.
        chunk = b" " * 8192
        oversized = client.post(
            "/api/v1/renewals",
            content=iter([chunk] * (BODY_BYTES_MAX // len(chunk) + 1)),
            headers={"Content-Type": "application/json", "Idempotency-Key": "k"},
        )
    assert limited_after_the_allowance(statuses), statuses
    assert oversized.request.headers["transfer-encoding"] == "chunked"
    assert oversized.status_code == 413, oversized.text
    assert oversized.json()["code"] == "body_too_large"
    assert oversized.headers["x-content-type-options"] == "nosniff"
