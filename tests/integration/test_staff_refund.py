"""Staff refunds of paid renewals not yet applied, on SQLite and PostgreSQL: concurrent requests
give one refund, the card is not credited afterwards, and an applied renewal is not refunded."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from tests.conftest import AppFactory
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.errors import TopupError
from topup.entrypoints.worker import work_once
from topup.ports import CardDetails
from topup.services import queries
from topup.services.activation import request_refund
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, renew

GOOD_CARD = CardDetails(number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123")
ACTIVE_CARD = "+60123456789"
CONCURRENT_REQUESTS = 10
WORK_ROUNDS_MAX = 20


async def paid_renewal(services: Services, key: str) -> str:
    view = await renew(
        services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD, idempotency_key=key)
    )
    assert view.status == "activating"
    return view.id


async def drain(services: Services) -> None:
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(services) == 0:
            return
    raise AssertionError("the worker still had work")


async def refunds(services: Services) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        query = (
            select(func.count())
            .select_from(t.ledger_entries)
            .where(t.ledger_entries.c.kind == "refund")
        )
        return int((await connection.execute(query)).scalar_one())


async def test_concurrent_staff_refunds_of_one_renewal_give_one_refund_and_no_credit(
    demo_app: Application,
) -> None:
    services = demo_app.services
    before = await queries.balance(services, ACTIVE_CARD)
    renewal_id = await paid_renewal(services, "refund-me")
    answers = await asyncio.gather(
        *(
            request_refund(services, renewal_id, reason="network outage in the region")
            for _ in range(CONCURRENT_REQUESTS)
        )
    )
    assert sorted(answers) == ["already_queued"] * (CONCURRENT_REQUESTS - 1) + ["queued"]
    await drain(services)
    assert (await get_renewal(services, renewal_id)).status == "refunded"
    assert await refunds(services) == 1
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.credit.minor == before.credit.minor  # never credited
    assert (await audit(services)).clean
    assert await request_refund(services, renewal_id, reason="again") == "already_queued"


async def test_an_applied_renewal_is_not_refunded_by_staff(demo_app: Application) -> None:
    services = demo_app.services
    renewal_id = await paid_renewal(services, "applied")
    await drain(services)
    with pytest.raises(TopupError) as caught:
        await request_refund(services, renewal_id, reason="changed my mind")
    assert caught.value.code == "renewal_not_refundable"
    assert await refunds(services) == 0


async def test_a_refund_needs_a_reason(demo_app: Application) -> None:
    renewal_id = await paid_renewal(demo_app.services, "no-reason")
    with pytest.raises(TopupError) as caught:
        await request_refund(demo_app.services, renewal_id, reason="  ")
    assert caught.value.code == "refund_reason_invalid"


async def test_a_renewal_already_sent_to_the_network_is_not_refunded_by_staff(
    make_app: AppFactory,
) -> None:
    application = make_app(network_delay_s=3600)  # the network takes an hour to apply it
    await load_demo(application.services)
    services = application.services
    renewal_id = await paid_renewal(services, "sent")
    await work_once(services)  # the worker sends it; the network is still working on it
    with pytest.raises(TopupError) as caught:
        await request_refund(services, renewal_id, reason="customer asked")
    assert caught.value.code == "activation_already_sent"
