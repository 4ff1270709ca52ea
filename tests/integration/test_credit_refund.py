"""A renewal paid from the card's credit, refunded, on SQLite and PostgreSQL: the network refuses
its activation for good (or staff refund it before activation) and two workers run the refund
job at once; the card gets its credit back once, with one balanced entry reversing the credit
payment, the renewal's timeline says so, and ``topup audit`` is clean."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.auto_renewal import SetterKind
from topup.domain.card_events import CardEventKind
from topup.domain.money import Money
from topup.domain.records import PaymentStatus
from topup.domain.renewal import RenewalStatus
from topup.entrypoints.worker import run_jobs
from topup.ports import NetworkProvisioner, ProvisionRequest, ProvisionResult, ProvisionStatus
from topup.services.activation import request_refund
from topup.services.audit import audit
from topup.services.auto_renewal import PaymentChoice, SetBy, run_auto_renewals, set_auto_renewal
from topup.services.auto_renewal.credit import pay_with_credit
from topup.services.demo import load_demo
from topup.settings import LimitSettings

CARD = "+60123456789"  # demo: prepaid, RM 5 credit, validity ends START + 10 days
CREDIT = Money(500, "MYR")
PRICE = Money(300, "MYR")
LEAD_S = 12 * 3600


class RefusingNetwork:
    """The network refuses every activation for good (as it does the demo's failure card)."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        self.calls += 1
        return ProvisionResult(ProvisionStatus.PERMANENT_FAILURE, message="no such subscriber")


async def _two_apps(make_app: AppFactory) -> tuple[Application, Application, FixedClock, str]:
    clock = FixedClock(START)
    limits = LimitSettings(login_slowdown_s=0, auto_renewal_lead_s=LEAD_S)
    first = make_app(clock=clock, seed=2, limits=limits, pool_size=5)
    second = make_app(clock=clock, seed=3, limits=limits, pool_size=5)
    for application in (first, second):
        application.services.network = RefusingNetwork(application.services.network)  # type: ignore[assignment]
    services = first.services
    await load_demo(services)
    async with services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=CARD)
        plan = await uow.plans.get("pack_5gb_7d")
        assert card is not None and plan is not None
        await uow.plans.upsert(replace(plan, code="pack_cheap", price=PRICE))
        await uow.commit()
    assert card.credit == CREDIT
    return first, second, clock, card.id


async def _both_workers(first: Application, second: Application) -> None:
    for _ in range(3):
        await asyncio.gather(run_jobs(first.services), run_jobs(second.services))


async def _count(application: Application, table: Any, *where: Any) -> int:
    query = select(func.count()).select_from(table).where(*where)
    async with application.engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def _check_given_back_once(application: Application, card_id: str, renewal_id: str) -> str:
    """The credit is back, one refund entry, the payment and renewal refunded; the reason."""
    services = application.services
    async with services.unit_of_work() as uow:
        card = await uow.cards.get(card_id)
        renewal = await uow.renewals.get(renewal_id)
        payment = await uow.payments.for_renewal(renewal_id)
        timeline = (await uow.renewals.timelines([renewal_id]))[renewal_id]
    assert card is not None and card.credit == CREDIT
    assert renewal is not None and renewal.status is RenewalStatus.REFUNDED
    assert payment is not None and payment.status is PaymentStatus.REFUNDED
    entries = t.ledger_entries
    assert (
        await _count(
            application, entries, entries.c.renewal_id == renewal_id, entries.c.kind == "refund"
        )
        == 1
    )
    refunded = timeline[-1]
    assert refunded.to_status is RenewalStatus.REFUNDED
    assert "given back to the card's credit" in refunded.reason
    report = await audit(services)
    assert report.clean, report.violations
    return refunded.reason


async def test_a_credit_paid_auto_renewal_refused_by_the_network_gives_the_credit_back_once(
    make_app: AppFactory,
) -> None:
    first, second, clock, card_id = await _two_apps(make_app)
    await set_auto_renewal(
        first.services,
        card_id=card_id,
        plan_code="pack_cheap",
        payment=PaymentChoice.credit(),
        set_by=SetBy(SetterKind.OPERATOR, "operator"),
    )
    async with first.services.unit_of_work() as uow:
        card = await uow.cards.get(card_id)
    assert card is not None and card.validity_end is not None
    clock.set(card.validity_end - dt.timedelta(seconds=LEAD_S))

    await asyncio.gather(run_auto_renewals(first.services), run_auto_renewals(second.services))
    async with first.services.unit_of_work() as uow:
        paid = await uow.cards.get(card_id)
    assert paid is not None and paid.credit == CREDIT - PRICE
    await _both_workers(first, second)

    [renewal_id] = [
        row.id
        for row in (await _renewals(first, card_id))
        if row.idempotency_key.startswith("auto:")
    ]
    reason = await _check_given_back_once(first, card_id, renewal_id)
    assert reason.startswith("activation failed permanently (no such subscriber)")
    # The period is not told succeeded: it failed for good (the network refused the card).
    clock.set(clock.now() + dt.timedelta(hours=1))
    await asyncio.gather(run_auto_renewals(first.services), run_auto_renewals(second.services))
    async with first.services.unit_of_work() as uow:
        events = await uow.cards.events(card_id, limit=50)
    kinds = [e.kind for e in events]
    assert kinds.count(CardEventKind.AUTO_RENEWAL_ATTEMPT.value) == 1
    assert CardEventKind.AUTO_RENEWAL_SUCCEEDED.value not in kinds
    [failed] = [e for e in events if e.kind == CardEventKind.AUTO_RENEWAL_FAILED.value]
    assert failed.detail["problem"] == "activation_failed" and failed.detail["refunded"] == 1


async def test_a_staff_refund_of_a_credit_paid_renewal_before_activation_gives_the_credit_back(
    make_app: AppFactory,
) -> None:
    first, second, _, card_id = await _two_apps(make_app)
    renewal = await pay_with_credit(
        first.services, card_id=card_id, plan_code="pack_cheap", key="credit-1", channel="web"
    )
    assert await request_refund(first.services, renewal.id, reason="bought by mistake") == "queued"

    await _both_workers(first, second)

    reason = await _check_given_back_once(first, card_id, renewal.id)
    assert reason.startswith("refunded at staff request before activation: bought by mistake")
    assert all(
        network.calls == 0  # the activation was withdrawn: never sent
        for network in (first.services.network, second.services.network)
        if isinstance(network, RefusingNetwork)
    )


async def _renewals(application: Application, card_id: str) -> list[Any]:
    async with application.services.unit_of_work() as uow:
        return list(await uow.renewals.for_card(card_id, limit=10))
