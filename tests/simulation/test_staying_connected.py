"""Staying connected (issue 11), simulated: 1,000 cards over 90 days on an injected clock, renewed
through every channel (web, app, store, kiosk, API) by card and e-wallet with declines and lost
answers, bills paid or left, two workers running every pass at once and one of them killed in
the middle of a pass and started again. At the end: `topup audit` clean, every forfeit in the
ledger, no renewal paid twice, every card's balances and status what its renewals and dates say.

One seed drives the run; a failure names it. Replay: TOPUP_SIMULATION_SEED=<seed> pytest
tests/simulation/test_staying_connected.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import pytest

from tests.simulation import invariants as inv
from tests.simulation.connected import START, Workers, simulate, simulation_limits
from topup.adapters.clock import FixedClock
from topup.adapters.db.engine import is_sqlite

SEED = int(os.environ.get("TOPUP_SIMULATION_SEED", "20261125"))
CARDS = 1_000
DAYS = 90
STEP_S = 8 * 3_600.0  # the clock moves this much between steps (three steps a day)
KILL_AT_STEP = 90  # day 30: the second worker is killed in the middle of its jobs pass
SQLITE_CARDS = 120  # SQLite: a smaller run (one writer at a time)
SQLITE_DAYS = 30
SQLITE_KILL_AT_STEP = 30

FAULTS: dict[str, Any] = {
    "gateway_fault_rate": 0.05,
    "gateway_settlement_delay_s": 600,
    "network_transient_failure_rate": 0.15,
    "network_permanent_failure_rate": 0.01,
    "wallet_approval_delay_s": 1_800.0,
}

pytestmark = pytest.mark.slow


async def test_a_fleet_stays_connected_over_ninety_days_with_two_workers_and_a_kill(
    make_app: Any, database_url: str
) -> None:
    sqlite = is_sqlite(database_url)
    cards, days, kill_at = (
        (SQLITE_CARDS, SQLITE_DAYS, SQLITE_KILL_AT_STEP) if sqlite else (CARDS, DAYS, KILL_AT_STEP)
    )
    clock = FixedClock(START)
    limits = simulation_limits(sqlite=sqlite)

    def application(seed: int) -> Any:
        return make_app(clock=clock, limits=limits, seed=seed, sandbox_seed=SEED, **FAULTS)

    web = application(SEED)
    workers = Workers(application, SEED)
    run = await simulate(
        web=web,
        workers=workers,
        clock=clock,
        seed=SEED,
        cards=cards,
        days=days,
        step_s=STEP_S,
        kill_at_step=kill_at,
    )
    inv.check(run, "renewals not settled", await inv.unsettled_renewals(web))
    inv.check(
        run, "the drain", [] if run.drained else [f"work still found after {run.drain_steps} steps"]
    )
    inv.check(run, "topup audit", await inv.audit_violations(web))
    inv.check(run, "forfeits not in the ledger", await inv.forfeits_not_in_the_ledger(web, run))
    inv.check(run, "renewals paid twice", await inv.renewals_paid_twice(web))
    inv.check(run, "cards", await inv.cards_not_following_their_renewals(web, run))
    inv.check(run, "usage", await inv.usage_not_applied_once(web, run))
    inv.check(run, "auto-renewal", await inv.auto_renewals_charged_twice(web))
    inv.check(run, "auto-renewal told", await inv.auto_renewals_told_but_not_renewed(web))
    inv.check(run, "auto-renewal left open", await inv.auto_renewal_attempts_left_open(web))
    inv.check(run, "bulk renewal", await inv.bulk_lines_renewed_twice(web))
    inv.check(run, "reminders", await inv.reminders_not_once(web, run))
    inv.check(run, "reminders after renewal", await inv.reminders_sent_after_renewal(web))
    inv.check(run, "states and dates", await inv.states_not_matching_dates(web))
    inv.check(run, "the kill", await inv.killed_work_not_finished_once(web, run))
    happened = await inv.what_happened(web, run)
    missing = [name for name, count in happened.items() if count == 0]
    inv.check(run, "never exercised", missing)
    print(
        f"{run.hint()}: {cards} cards, {days} days in {run.steps} steps, "
        f"{run.elapsed_s:.1f} s, CPU {run.cpu_s:.1f} s (subscribers {run.subscribers_s:.1f} s, workers "
        f"{run.workers_s:.1f} s, drain {run.drain_steps} steps {run.drain_s:.1f} s); submitted {dict(run.submitted)}; refused {dict(run.refusals)}; "
        f"{happened}"
    )


CHECKED_CARDS = 40  # the run whose database the next test spoils, one invariant at a time
CHECKED_DAYS = 10


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_each_invariant_catches_what_it_is_about(make_app: Any, database_url: str) -> None:
    """The checks can fail: after a small clean run, a forfeit recorded twice (of zero credit,
    which `topup audit` cannot see), a usage record's debit lost, two paid auto-renewal tries of
    one period, a card left in a status its dates deny, a threshold event raised twice and an
    auto-renewal told succeeded whose renewal was never paid are each reported, naming the
    card."""
    from sqlalchemy import insert, select, update

    from topup.adapters.db import tables as t
    from topup.domain import ledger
    from topup.domain.auto_renewal import TRY_KEY_PREFIX
    from topup.domain.money import Money

    clock = FixedClock(START)
    limits = simulation_limits(sqlite=True)

    def application(seed: int) -> Any:
        return make_app(clock=clock, limits=limits, seed=seed, sandbox_seed=SEED, **FAULTS)

    web = application(SEED)
    run = await simulate(
        web=web,
        workers=Workers(application, SEED),
        clock=clock,
        seed=SEED,
        cards=CHECKED_CARDS,
        days=CHECKED_DAYS,
        step_s=STEP_S,
        kill_at_step=3,
    )
    assert not await inv.forfeits_not_in_the_ledger(web, run), run.hint()
    assert not await inv.cards_not_following_their_renewals(web, run), run.hint()
    assert not await inv.states_not_matching_dates(web), run.hint()
    assert not await inv.usage_not_applied_once(web, run), run.hint()
    assert not await inv.auto_renewals_charged_twice(web), run.hint()
    assert not await inv.audit_violations(web), run.hint()
    assert not await inv.reminders_not_once(web, run), run.hint()
    assert not await inv.reminders_sent_after_renewal(web), run.hint()
    await _spoil_reminders(web, run)
    c, u, ev = t.cards, t.usage_records, t.card_events
    expired = (await inv.rows(web, select(c.c.id, c.c.msisdn).where(c.c.status == "expired")))[0]
    async with web.services.unit_of_work() as uow:
        forfeit = ledger.forfeit(card_id=expired.id, amount=Money.zero("MYR"), data_quota_mb=0)
        await uow.ledger.record(forfeit, at=clock.now())
        await uow.commit()
    assert not await inv.audit_violations(web), "the audit sees a zero forfeit after all"
    assert expired.msisdn in " ".join(await inv.forfeits_not_in_the_ledger(web, run))
    used = (
        await inv.rows(
            web,
            select(u.c.record_id, c.c.msisdn)
            .join(c, c.c.id == u.c.card_id)
            .where(u.c.counted.is_(True), c.c.status == "active", u.c.data_used_mb > 0),
        )
    )[0]
    async with web.engine.begin() as connection:
        await connection.execute(
            update(u).where(u.c.record_id == used.record_id).values(data_used_mb=0)
        )
    assert used.msisdn in " ".join(await inv.cards_not_following_their_renewals(web, run))
    async with web.engine.begin() as connection:
        await connection.execute(update(c).where(c.c.id == expired.id).values(status="active"))
        exhausted = (
            await connection.execute(select(ev).where(ev.c.kind == "data_exhausted"))
        ).first()
        assert exhausted is not None, run.hint()
        await connection.execute(
            insert(ev).values(
                card_id=exhausted.card_id,
                kind=exhausted.kind,
                at=exhausted.at,
                detail=exhausted.detail,
            )
        )
    r = t.renewals
    paid = (await inv.rows(web, select(r).where(r.c.status == "completed")))[0]._asdict()
    async with web.engine.begin() as connection:
        for attempt in (1, 2):  # two paid tries of one card's period
            key = f"{TRY_KEY_PREFIX}{paid['card_id']}:2027-01-01T00:00:00+00:00:{attempt}"
            values = paid | {
                "id": f"00000000-0000-4000-8000-00000000000{attempt}",
                "idempotency_key": key,
                "receipt_number": None,
            }
            await connection.execute(insert(r).values(**values))
    assert paid["card_id"] in " ".join(await inv.auto_renewals_charged_twice(web))
    assert not await inv.auto_renewals_told_but_not_renewed(web), run.hint()
    refunded = "00000000-0000-4000-8000-000000000001"  # the first of the two tries above
    async with web.engine.begin() as connection:  # told succeeded, then refunded instead
        await connection.execute(update(r).where(r.c.id == refunded).values(status="refunded"))
        await connection.execute(
            insert(ev).values(
                card_id=paid["card_id"],
                kind="auto_renewal_succeeded",
                at=clock.now(),
                detail=json.dumps({"period": "p", "renewal_id": refunded}),
            )
        )
    told = " ".join(await inv.auto_renewals_told_but_not_renewed(web))
    assert paid["card_id"] in told and "refunded" in told
    assert expired.msisdn in " ".join(await inv.states_not_matching_dates(web))
    assert exhausted.card_id in " ".join(await inv.usage_not_applied_once(web, run))


async def _spoil_reminders(web: Any, run: Any) -> None:
    """A text sent twice, a sent delivery whose text never went out, a grace reminder lost and a
    reminder sent after its card was renewed are each reported, naming the card and period."""
    from sqlalchemy import delete, select, update

    from topup.adapters.db import tables as t

    rm, d, r = t.reminders, t.reminder_deliveries, t.renewals
    texted = (
        await inv.rows(
            web,
            select(d.c.id, rm.c.card_id, rm.c.period)
            .join(rm, rm.c.id == d.c.reminder_id)
            .where(d.c.channel == "sms", d.c.status == "sent"),
        )
    )[0]
    run.texts[texted.id] += 1  # the provider was asked twice
    told = " ".join(await inv.reminders_not_once(web, run))
    assert f"card {texted.card_id} period {texted.period}" in told and "texted 2 times" in told
    del run.texts[texted.id]  # ... and then never
    told = " ".join(await inv.reminders_not_once(web, run))
    assert texted.card_id in told and "no text went out" in told
    run.texts[texted.id] = 1
    renewed = await inv.rows(
        web,
        select(t.renewals.c.card_id, t.renewals.c.completed_at).where(
            t.renewals.c.completed_at.is_not(None)
        ),
    )
    grace = next(  # a card not renewed soon after (whose grace reminder is never moot)
        row
        for row in await inv.rows(
            web,
            select(rm.c.id, rm.c.card_id, rm.c.period, rm.c.due_at).where(
                rm.c.kind == "grace_entered"
            ),
        )
        if not any(
            each.card_id == row.card_id
            and row.due_at <= each.completed_at <= row.due_at + inv.GRACE_REMINDER_MOOT_WITHIN
            for each in renewed
        )
    )
    async with web.engine.begin() as connection:  # its reminder lost (and its deliveries)
        sent = {
            row.id
            for row in await connection.execute(select(d.c.id).where(d.c.reminder_id == grace.id))
        }
        await connection.execute(delete(d).where(d.c.reminder_id == grace.id))
        await connection.execute(delete(rm).where(rm.c.id == grace.id))
    for key in sent:
        run.texts.pop(key, None)
    told = " ".join(await inv.reminders_not_once(web, run))
    assert f"card {grace.card_id} entered grace in period {grace.period}: 0" in told
    assert not await inv.reminders_sent_after_renewal(web), run.hint()
    moot = (
        await inv.rows(
            web,
            select(d.c.id, rm.c.id.label("reminder_id"), rm.c.card_id, rm.c.created_at)
            .join(rm, rm.c.id == d.c.reminder_id)
            .join(r, (r.c.card_id == rm.c.card_id) & (r.c.completed_at > rm.c.created_at))
            .where(
                d.c.status == "sent",
                r.c.status == "completed",
                rm.c.kind.not_in(("grace_entered", "auto_renewal_succeeded")),
            ),
        )
    )[0]
    async with web.engine.begin() as connection:  # sent long after the card was renewed
        await connection.execute(
            update(d).where(d.c.id == moot.id).values(sent_at=START + dt.timedelta(days=400))
        )
    told = " ".join(await inv.reminders_sent_after_renewal(web))
    assert moot.card_id in told and "after the card was renewed" in told
    async with web.engine.begin() as connection:  # a cancelled reminder that went out
        await connection.execute(
            update(rm).where(rm.c.id == moot.reminder_id).values(status="cancelled")
        )
    assert "cancelled but was sent" in " ".join(await inv.reminders_sent_after_renewal(web))
