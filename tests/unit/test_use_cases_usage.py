"""Usage on the in-memory fakes: the use cases' bookkeeping, without a database."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator

import pytest

from topup.adapters.clock import FixedClock
from topup.adapters.network.sandbox import SandboxNetwork
from topup.bootstrap import build_in_memory
from topup.domain.errors import InputError
from topup.domain.usage_files import UsageFormat
from topup.services import queries
from topup.services.demo import load_demo
from topup.services.usage import import_usage, tell_network
from topup.settings import LimitSettings, Settings

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
HEADER = "record_id,card,used_at,data_used_mb\n"


def settings() -> Settings:
    return Settings(
        secret_key="dG9wdXAtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEhISE=",
        sandbox_journal="",
        sandbox_sms_outbox="",
        mail_outbox="",
        network_latency_s=0,
        usage_secret="s",
    )


async def test_batches_apply_each_record_once_and_bar_an_exhausted_card() -> None:
    services, _ = build_in_memory(
        settings(), limits=LimitSettings(usage_batch_size=2), clock=FixedClock(NOW)
    )
    await load_demo(services)
    lines = (
        [HEADER]
        + [f"u{n},+60123456789,2026-11-25T0{n}:00:00Z,600\n" for n in range(1, 5)]
        + ["u1,+60123456789,2026-11-25T01:00:00Z,600\n"]
    )  # twice in one file
    summary = await import_usage(services, lines, kind=UsageFormat.CSV)
    assert (summary.applied, summary.duplicates, summary.debited_mb) == (4, 1, 2048)
    assert summary.events == 1  # 848 MB left after the first batch, none after the second
    view = await queries.balance(services, "+60123456789")
    assert view.data_quota_mb == 0 and view.data_exhausted
    assert await tell_network(services) == 1
    network = services.network_data
    assert isinstance(network, SandboxNetwork)
    assert network.data_barred["+60123456789"] is True


async def test_usage_on_postpaid_and_expired_cards_is_kept_but_debits_nothing() -> None:
    services, database = build_in_memory(settings(), clock=FixedClock(NOW))
    await load_demo(services)
    lines = [
        HEADER,
        "p1,+60198765432,2026-11-25T07:00:00Z,500\n",  # postpaid
        "e1,+60123450002,2026-11-25T07:00:00Z,300\n",  # grace ended 31 days ago
        "g1,+60123450001,2026-11-25T07:00:00Z,21\n",  # in grace, no data left
        "a1,+60123456789,2026-11-25T07:00:00Z,1821\n",  # 227 MB of 2048 left: 11 %
    ]
    summary = await import_usage(services, lines, kind=UsageFormat.CSV)
    assert (summary.applied, summary.postpaid, summary.card_expired) == (4, 1, 1)
    assert (summary.debited_mb, summary.cards, summary.events) == (1821, 1, 1)
    active = await queries.balance(services, "+60123456789")
    events = {(card_id, event.kind) for card_id, event in database.tables.card_events}
    assert {(active.id, "data_low")} == {event for event in events if "data" in event[1]}
    assert (await queries.balance(services, "+60198765432")).data_quota_mb == 0
    again = await import_usage(services, lines, kind=UsageFormat.CSV)
    assert (again.applied, again.duplicates, again.postpaid, again.card_expired) == (0, 4, 0, 0)


async def test_the_garbage_collector_is_paused_during_an_import_asked_to_and_on_again_after() -> (
    None
):
    services, _ = build_in_memory(settings(), clock=FixedClock(NOW))
    await load_demo(services)
    seen: list[bool] = []

    def lines() -> Iterator[str]:
        yield HEADER
        seen.append(gc.isenabled())
        yield "z1,+60123456789,2026-11-25T07:00:00Z,1\n"

    assert gc.isenabled()
    summary = await import_usage(services, lines(), kind=UsageFormat.CSV, pause_collector=True)
    assert (summary.applied, seen, gc.isenabled()) == (1, [False], True)
    with pytest.raises(InputError):  # a file refused whole: the collector is on again too
        await import_usage(
            services,
            ["no,header\n", "z2,+60123456789,x,1\n"],
            kind=UsageFormat.CSV,
            pause_collector=True,
        )
    assert gc.isenabled()
    # A server's delivery (not asked to) leaves the collector alone for its other requests.
    seen.clear()
    await import_usage(services, lines(), kind=UsageFormat.CSV)
    assert seen == [True]
