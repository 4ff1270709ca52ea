"""Staying connected (issue 11), simulated: 1,000 cards over 90 days on an injected clock, renewed
through every channel (web, app, store, kiosk, API) by card and e-wallet with declines and lost
answers, bills paid or left, two workers running every pass at once and one of them killed in
the middle of a pass and started again. At the end: `topup audit` clean, every forfeit in the
ledger, no renewal paid twice, every card's balances and status what its renewals and dates say.

One seed drives the run; a failure names it. Replay: TOPUP_SIMULATION_SEED=<seed> pytest
tests/simulation/test_staying_connected.py
"""

from __future__ import annotations

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
    inv.check(run, "topup audit", await inv.audit_violations(web))
    inv.check(run, "forfeits not in the ledger", await inv.forfeits_not_in_the_ledger(web, run))
    inv.check(run, "renewals paid twice", await inv.renewals_paid_twice(web))
    inv.check(run, "cards", await inv.cards_not_following_their_renewals(web, run))
    inv.check(run, "usage", await inv.usage_not_applied_once(web, run))
    inv.check(run, "states and dates", await inv.states_not_matching_dates(web))
    inv.check(run, "the kill", await inv.killed_work_not_finished_once(web, run))
    happened = await inv.what_happened(web, run)
    missing = [name for name, count in happened.items() if count == 0]
    inv.check(run, "never exercised", missing)
    print(
        f"{run.hint()}: {cards} cards, {days} days in {run.steps} steps, "
        f"{run.elapsed_s:.1f} s, CPU {run.cpu_s:.1f} s (subscribers {run.subscribers_s:.1f} s, workers "
        f"{run.workers_s:.1f} s); submitted {dict(run.submitted)}; refused {dict(run.refusals)}; "
        f"{happened}"
    )
