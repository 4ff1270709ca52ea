"""The audit finds what is wrong: each kind of corruption is reported, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, insert, update

from tests.conftest import START
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.entrypoints.worker import work_once
from topup.ports import (
    NetworkProvisioner,
    PaymentCardDetails,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
)
from topup.services.activation import request_refund
from topup.services.audit import audit
from topup.services.renewals import RenewalRequest, get_renewal, renew

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
NETWORK_WAIT_S = 5
WORK_ROUNDS_MAX = 20


async def _completed_reload(application: Application) -> str:
    services = application.services
    view = await renew(services, RenewalRequest("0123456789", "reload_10", GOOD_CARD))
    await work_once(services)
    report = await audit(services)
    assert report.clean, report.violations  # the corruption below is the only problem
    return view.id


def _drift_a_balance(renewal_id: str) -> Any:
    return update(t.account_balances).values(balance_minor=t.account_balances.c.balance_minor + 1)


def _drop_the_activation_entry(renewal_id: str) -> Any:
    return delete(t.ledger_postings).where(
        t.ledger_postings.c.entry_id.in_(
            t.ledger_entries.select()
            .with_only_columns(t.ledger_entries.c.id)
            .where(
                t.ledger_entries.c.renewal_id == renewal_id, t.ledger_entries.c.kind == "activation"
            )
        )
    )


def _unbalance_a_posting(renewal_id: str) -> Any:
    return update(t.ledger_postings).values(amount_minor=t.ledger_postings.c.amount_minor + 7)


def _credit_without_ledger(renewal_id: str) -> Any:
    return update(t.cards).where(t.cards.c.msisdn == "+60123456789").values(credit_minor=999_999)


def _activating_with_nothing_scheduled(renewal_id: str) -> Any:
    return update(t.renewals).where(t.renewals.c.id == renewal_id).values(status="activating")


def _job_about_a_missing_renewal(renewal_id: str) -> Any:
    return insert(t.jobs).values(
        kind="receipt",
        subject_kind="renewal",
        subject_id="no-such-renewal",
        status="done",
        attempts=0,
        claims=1,
        next_attempt_at=START,
        first_requested_at=START,
        created_at=START,
        updated_at=START,
    )


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_drift_a_balance, "but its entries sum to"),
        (_drop_the_activation_entry, "has fewer than two postings"),
        (_unbalance_a_posting, "does not balance"),
        (_credit_without_ledger, "but its ledger account holds"),
        (_activating_with_nothing_scheduled, "with nothing scheduled to move it on"),
        (_job_about_a_missing_renewal, "is about renewal no-such-renewal, which does not exist"),
    ],
)
async def test_each_kind_of_corruption_is_reported(
    demo_app: Application, corrupt: Callable[[str], Any], expected: str
) -> None:
    renewal_id = await _completed_reload(demo_app)
    async with demo_app.engine.begin() as connection:
        await connection.execute(corrupt(renewal_id))
    report = await audit(demo_app.services)
    assert not report.clean
    assert any(expected in violation for violation in report.violations), report.violations


async def test_a_renewal_whose_entries_do_not_match_its_status_is_reported(
    demo_app: Application,
) -> None:
    renewal_id = await _completed_reload(demo_app)
    async with demo_app.engine.begin() as connection:
        await connection.execute(
            update(t.renewals).where(t.renewals.c.id == renewal_id).values(status="refunded")
        )
    report = await audit(demo_app.services)
    expected = "is refunded with 1 capture(s), 1 activation(s), 0 refund(s)"
    assert any(expected in violation for violation in report.violations), report.violations


async def _drain(application: Application) -> None:
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(application.services) == 0:
            return
    raise AssertionError("the worker still had work")


async def test_a_refunded_renewal_whose_activation_the_network_applied_is_reported(
    demo_app: Application,
) -> None:
    services = demo_app.services
    view = await renew(services, RenewalRequest("0123456789", "reload_10", GOOD_CARD))
    assert await request_refund(services, view.id, reason="customer asked") == "queued"
    await _drain(demo_app)
    assert (await audit(services)).clean
    async with demo_app.engine.begin() as connection:  # as if the network had applied it
        await connection.execute(
            update(t.jobs)
            .where(t.jobs.c.subject_id == view.id, t.jobs.c.kind == "activate")
            .values(outcome="applied")
        )
    report = await audit(services)
    expected = f"renewal {view.id} was refunded but the network applied it"
    assert any(expected in violation for violation in report.violations), report.violations


class ContradictingNetwork:
    """The first activation request waits until released and is then applied; every later one
    is refused for good (a network that lost track of what it was doing)."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network
        self.calls = 0
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        self.calls += 1
        if self.calls > 1:
            return ProvisionResult(ProvisionStatus.PERMANENT_FAILURE, message="no such order")
        self.reached.set()
        await self.release.wait()
        return await self._network.apply(request)


async def test_an_activation_applied_after_another_worker_had_it_refunded_is_reported(
    demo_app: Application,
) -> None:
    """A worker stalls past its lease; another takes the job again, is refused and refunds. The
    stalled worker then hears "applied": the card has the data and the payer the money."""
    services = demo_app.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    network = ContradictingNetwork(services.network)
    services.network = network
    view = await renew(services, RenewalRequest("0123456789", "reload_10", GOOD_CARD))
    stalled = asyncio.create_task(work_once(services))
    await asyncio.wait_for(network.reached.wait(), NETWORK_WAIT_S)
    clock.advance(services.limits.worker.job_lease_s + 1)
    await _drain(demo_app)  # the second worker: refused, so refunded
    assert (await get_renewal(services, view.id)).status == "refunded"
    network.release.set()
    await stalled
    assert (await get_renewal(services, view.id)).status == "refunded"
    report = await audit(services)
    expected = f"renewal {view.id} was refunded but the network applied it"
    assert any(expected in violation for violation in report.violations), report.violations
