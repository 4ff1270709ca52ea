"""Usage records on SQLite and PostgreSQL: applied once by id (a re-sent file, two imports at
once), earlier-period records kept but not debited, the network's data bar, and two workers
advancing the same lifecycle batch."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import func, select, text

from tests.conftest import START, AppFactory
from topup.adapters.db import tables as t
from topup.adapters.db.usage import COPY_RECORDS_MIN
from topup.adapters.network.sandbox import SandboxNetwork
from topup.bootstrap import Application
from topup.domain import ledger
from topup.domain.card_events import CardEventKind
from topup.domain.money import Money
from topup.domain.usage_files import UsageFormat
from topup.services import queries
from topup.services.audit import audit
from topup.services.demo import load_demo
from topup.services.lifecycle import advance_cards
from topup.services.usage import import_usage, tell_network
from topup.settings import LimitSettings

ACTIVE_CARD = "+60123456789"  # prepaid, valid until START + 10 days, 2048 MB
HEADER = "record_id,card,used_at,data_used_mb\n"


def usage_csv(records: Sequence[tuple[str, str, dt.datetime, int]]) -> list[str]:
    return [HEADER] + [
        f"{record_id},{card},{used_at.isoformat()},{mb}\n"
        for record_id, card, used_at, mb in records
    ]


async def quota(application: Application, card: str = ACTIVE_CARD) -> int:
    return (await queries.balance(application.services, card)).data_quota_mb


async def events(application: Application, kind: CardEventKind) -> list[dict[str, object]]:
    async with application.engine.connect() as connection:
        rows = await connection.execute(
            select(t.card_events.c.detail).where(t.card_events.c.kind == kind.value)
        )
        return [json.loads(row[0]) for row in rows]


async def test_a_re_sent_file_changes_nothing(demo_app: Application) -> None:
    lines = usage_csv(
        [(f"r{n}", ACTIVE_CARD, START - dt.timedelta(minutes=n), 100) for n in range(1, 6)]
    )
    first = await import_usage(demo_app.services, lines, kind=UsageFormat.CSV)
    assert (first.applied, first.debited_mb) == (5, 500)
    assert await quota(demo_app) == 2048 - 500
    again = await import_usage(demo_app.services, lines, kind=UsageFormat.CSV)
    assert (again.applied, again.duplicates, again.debited_mb) == (0, 5, 0)
    assert await quota(demo_app) == 2048 - 500


async def test_two_imports_of_the_same_file_at_once_apply_it_once(make_app: AppFactory) -> None:
    first_app, second_app = make_app(pool_size=5), make_app(pool_size=5)
    await load_demo(first_app.services)
    lines = usage_csv(
        [(f"c{n}", ACTIVE_CARD, START - dt.timedelta(seconds=n), 3) for n in range(1, 301)]
    )
    results = await asyncio.gather(
        import_usage(first_app.services, lines, kind=UsageFormat.CSV),
        import_usage(second_app.services, lines, kind=UsageFormat.CSV),
    )
    assert sorted(result.applied for result in results) == [0, 300]
    assert sum(result.duplicates for result in results) == 300
    assert await quota(first_app) == 2048 - 900
    async with first_app.engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(t.usage_records))
    assert count == 300


async def test_records_used_before_the_last_renewal_do_not_debit_the_new_period(
    demo_app: Application,
) -> None:
    renewed_at = START - dt.timedelta(hours=2)
    async with demo_app.engine.begin() as connection:
        card_id = await connection.scalar(
            select(t.cards.c.id).where(t.cards.c.msisdn == ACTIVE_CARD)
        )
        await connection.execute(
            t.renewals.insert().values(
                id="renewal-earlier",
                card_id=card_id,
                plan_code="pack_5gb_7d",
                kind="prepaid_pack",
                channel="web",
                amount_minor=1500,
                currency="MYR",
                data_quota_mb=5120,
                validity_days=7,
                status="completed",
                idempotency_key="usage-test-renewal",
                request_fingerprint="x",
                created_at=renewed_at,
                updated_at=renewed_at,
                completed_at=renewed_at,
            )
        )
    lines = usage_csv(
        [
            ("late", ACTIVE_CARD, renewed_at - dt.timedelta(minutes=5), 700),  # old period
            ("now", ACTIVE_CARD, renewed_at + dt.timedelta(minutes=5), 48),
        ]
    )
    summary = await import_usage(demo_app.services, lines, kind=UsageFormat.CSV)
    assert (summary.applied, summary.earlier_period, summary.debited_mb) == (2, 1, 48)
    assert await quota(demo_app) == 2000


async def test_an_exhausted_card_is_barred_on_the_network_until_a_renewal_gives_it_data(
    demo_app: Application,
) -> None:
    services = demo_app.services
    network = services.network_data
    assert isinstance(network, SandboxNetwork)
    lines = usage_csv(
        [
            ("a", ACTIVE_CARD, START - dt.timedelta(hours=3), 1700),  # 348 MB left: 17 %
            ("b", ACTIVE_CARD, START - dt.timedelta(hours=2), 400),  # nothing left
            ("c", ACTIVE_CARD, START - dt.timedelta(hours=1), 10),
        ]
    )
    for line in lines[1:]:  # one record per import: thresholds are crossed one by one
        await import_usage(services, [HEADER, line], kind=UsageFormat.CSV)
    assert await quota(demo_app) == 0
    low, exhausted = (
        await events(demo_app, CardEventKind.DATA_LOW),
        await events(demo_app, CardEventKind.DATA_EXHAUSTED),
    )
    assert len(low) == 1 and low[0]["data_quota_mb"] == 348 and "period" in low[0]
    assert len(exhausted) == 1 and exhausted[0]["data_quota_mb"] == 0
    view = await queries.balance(services, ACTIVE_CARD)
    assert view.data_exhausted
    assert await tell_network(services) == 1
    assert network.data_barred[ACTIVE_CARD] is True
    assert await tell_network(services) == 0  # told once
    async with demo_app.engine.begin() as connection:  # a renewal applied: data again
        await connection.execute(
            text("UPDATE cards SET data_quota_mb = 5120 WHERE msisdn = :msisdn"),
            {"msisdn": ACTIVE_CARD},
        )
    assert await tell_network(services) == 2  # lifted, then told
    assert network.data_barred[ACTIVE_CARD] is False
    assert not (await queries.balance(services, ACTIVE_CARD)).data_exhausted


async def _due_cards(application: Application, count: int) -> None:
    """``count`` prepaid cards whose grace ended (due for expiry, with credit to forfeit) and as
    many past validity (due for grace)."""
    rows = []
    for number in range(2 * count):
        expired = number < count
        validity_end = START - dt.timedelta(days=40 if expired else 1)
        rows.append(
            {
                "id": f"due-{number}",
                "msisdn": f"+601100{number:06d}",
                "iccid": f"8960099{number:012d}",
                "kind": "prepaid",
                "status": "grace" if expired else "active",
                "currency": "MYR",
                "credit_minor": 300,
                "data_quota_mb": 50,
                "validity_end": validity_end,
                "bill_due_minor": 0,
                "bill_due_date": None,
                "holder_name": "",
                "email": "",
                "version": 0,
                "created_at": START,
                "updated_at": START,
            }
        )
    async with application.engine.begin() as connection:
        await connection.execute(t.cards.insert(), rows)
    async with application.services.unit_of_work() as uow:  # their credit, on the books
        await uow.ledger.record_many(
            [ledger.opening_credit(card_id=row["id"], amount=Money(300, "MYR")) for row in rows],
            at=START,
        )
        await uow.commit()


async def test_two_workers_advancing_the_same_cards_move_each_once(
    make_app: AppFactory,
) -> None:
    limits = LimitSettings(lifecycle_batch_size=7)
    first, second = make_app(limits=limits, pool_size=5), make_app(limits=limits, pool_size=5)
    await _due_cards(first, 40)
    moved = await asyncio.gather(advance_cards(first.services), advance_cards(second.services))
    assert sum(moved) == 80
    async with first.engine.connect() as connection:
        per_card = await connection.execute(
            select(t.card_events.c.card_id, func.count())
            .where(t.card_events.c.kind.like("status_%"))
            .group_by(t.card_events.c.card_id)
        )
        assert {count for _, count in per_card} == {1}
        forfeits = await connection.scalar(
            select(func.count())
            .select_from(t.ledger_entries)
            .where(t.ledger_entries.c.kind == "forfeit")
        )
        statuses = await connection.execute(
            select(t.cards.c.status, func.count()).group_by(t.cards.c.status)
        )
        by_status = dict(statuses.all())
    assert forfeits == 40
    assert by_status == {"expired": 40, "grace": 40}
    assert await advance_cards(first.services) == 0
    report = await audit(first.services)
    assert report.clean, report.violations


async def test_usage_on_postpaid_and_expired_cards_is_kept_without_debit_or_threshold(
    demo_app: Application,
) -> None:
    lines = usage_csv(
        [
            ("post", "+60198765432", START - dt.timedelta(hours=1), 500),  # postpaid
            ("gone", "+60123450002", START - dt.timedelta(hours=1), 300),  # grace ended
            ("here", ACTIVE_CARD, START - dt.timedelta(hours=1), 1821),  # 227 MB left: 11 %
        ]
    )
    summary = await import_usage(demo_app.services, lines, kind=UsageFormat.CSV)
    assert (summary.applied, summary.postpaid, summary.card_expired) == (3, 1, 1)
    assert (summary.debited_mb, summary.cards, summary.events) == (1821, 1, 1)
    assert await events(demo_app, CardEventKind.DATA_EXHAUSTED) == []
    (low,) = await events(demo_app, CardEventKind.DATA_LOW)
    assert low["data_quota_mb"] == 227
    async with demo_app.engine.connect() as connection:
        rows = await connection.execute(
            select(t.usage_records.c.record_id, t.usage_records.c.counted)
        )
        kept = {record_id: counted for record_id, counted in rows}
        states = await connection.scalar(select(func.count()).select_from(t.card_usage))
    assert kept == {"post": False, "gone": False, "here": True}
    assert states == 1  # only the debited card has a usage state


async def test_two_imports_of_different_records_of_one_card_at_once_debit_both(
    make_app: AppFactory,
) -> None:
    limits = LimitSettings(usage_batch_size=10)  # many transactions each: they interleave
    first_app = make_app(limits=limits, pool_size=5)
    second_app = make_app(limits=limits, pool_size=5)
    await load_demo(first_app.services)
    files = [
        usage_csv(
            [(f"{name}{n}", ACTIVE_CARD, START - dt.timedelta(seconds=n), 2) for n in range(200)]
        )
        for name in ("x", "y")
    ]
    results = await asyncio.gather(
        import_usage(first_app.services, files[0], kind=UsageFormat.CSV),
        import_usage(second_app.services, files[1], kind=UsageFormat.CSV),
    )
    assert [result.applied for result in results] == [200, 200]
    assert await quota(first_app) == 2048 - 800


async def test_a_large_batch_is_applied_once_however_it_goes_in(demo_app: Application) -> None:
    """A batch of COPY_RECORDS_MIN records or more goes in by COPY on PostgreSQL, straight in
    when its ids are new, else by way of a temporary table: new records, a record id twice in
    the batch, records already applied and a postpaid card's count as with smaller batches."""
    count = COPY_RECORDS_MIN + 10

    def records(prefix: str, used_mb: int) -> list[tuple[str, str, dt.datetime, int]]:
        return [
            (
                f"{prefix}{n}",
                ACTIVE_CARD,
                START - dt.timedelta(seconds=n),
                used_mb if n < 100 else 0,
            )
            for n in range(count)
        ]

    clean = [*records("a", 1), ("post1", "+60198765432", START, 9)]
    first = await import_usage(demo_app.services, usage_csv(clean), kind=UsageFormat.CSV)
    assert (first.applied, first.duplicates, first.postpaid, first.debited_mb) == (
        count + 1,
        0,
        1,
        100,
    )
    # New ids where a few are looked up, one known (not looked up) and one twice: copied
    # straight in, stopped, then inserted by way of the temporary table.
    mixed = records("b", 2)
    mixed[count // 2 + 1] = clean[5]
    mixed.append(mixed[3])
    second = await import_usage(demo_app.services, usage_csv(mixed), kind=UsageFormat.CSV)
    assert (second.applied, second.duplicates, second.debited_mb) == (count - 1, 2, 200)
    resent = await import_usage(demo_app.services, usage_csv(clean), kind=UsageFormat.CSV)
    assert (resent.applied, resent.duplicates, resent.debited_mb) == (0, count + 1, 0)
    assert await quota(demo_app) == 2048 - 100 - 200
    async with demo_app.engine.connect() as connection:
        stored = await connection.scalar(select(func.count()).select_from(t.usage_records))
    assert stored == 2 * count


async def test_a_re_sent_file_with_new_records_applies_only_the_new_ones_once(
    demo_app: Application,
) -> None:
    """A batch whose first looked-up id is known (a file re-sent with records added): every id
    is looked up and the known ones left out before any card is locked; the new ones, one of
    them twice, go in once, whether few (arrays) or many (COPY, stopped by the id twice, then
    the temporary table)."""
    for round_number, new_count in enumerate((50, COPY_RECORDS_MIN + 5)):
        known = [
            (f"k{round_number}-{n}", ACTIVE_CARD, START - dt.timedelta(seconds=n), 0)
            for n in range(200)
        ]
        first = await import_usage(demo_app.services, usage_csv(known), kind=UsageFormat.CSV)
        assert first.applied == 200
        new = [
            (f"n{round_number}-{n}", ACTIVE_CARD, START - dt.timedelta(seconds=n), int(n < 10))
            for n in range(new_count)
        ]
        half = new_count // 2
        mixed = known[:100] + new[:half] + [new[3]] + known[100:] + new[half:]
        before = await quota(demo_app)
        summary = await import_usage(demo_app.services, usage_csv(mixed), kind=UsageFormat.CSV)
        assert (summary.records, summary.applied, summary.duplicates, summary.debited_mb) == (
            len(mixed),
            new_count,
            201,
            10,
        )
        assert await quota(demo_app) == before - 10
        again = await import_usage(demo_app.services, usage_csv(mixed), kind=UsageFormat.CSV)
        assert (again.applied, again.duplicates, again.debited_mb) == (0, len(mixed), 0)
        assert await quota(demo_app) == before - 10
    async with demo_app.engine.connect() as connection:
        stored = await connection.scalar(select(func.count()).select_from(t.usage_records))
    assert stored == 2 * 200 + 50 + COPY_RECORDS_MIN + 5


async def test_record_ids_with_backslashes_are_stored_as_sent_in_a_large_batch(
    demo_app: Application,
) -> None:
    """A large batch goes in as COPY text, where a backslash starts an escape: ids keep theirs,
    copied straight in (all new) and by way of the temporary table (an id twice)."""
    stored_odd: list[str] = []
    for round_number in range(2):
        odd = [
            f"a\\b{round_number}",
            f"\\.{round_number}",
            f"\\N{round_number}",
            f"end{round_number}\\",
        ]
        records = [
            (f"bs{round_number}-{n}", ACTIVE_CARD, START - dt.timedelta(seconds=n), 0)
            for n in range(COPY_RECORDS_MIN)
        ]
        records += [(record_id, ACTIVE_CARD, START, 1) for record_id in odd] * (round_number + 1)
        summary = await import_usage(demo_app.services, usage_csv(records), kind=UsageFormat.CSV)
        assert (summary.applied, summary.duplicates, summary.debited_mb) == (
            COPY_RECORDS_MIN + 4,
            4 * round_number,
            4,
        )
        stored_odd += odd
    async with demo_app.engine.connect() as connection:
        stored = await connection.execute(
            select(t.usage_records.c.record_id).where(t.usage_records.c.record_id.in_(stored_odd))
        )
        assert sorted(row[0] for row in stored) == sorted(stored_odd)
