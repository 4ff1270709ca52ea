"""Money and concurrency defects found in review, each shown first by a failing test."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from tests.conftest import AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways.sandbox import CARD_TIMEOUT_CHARGE_TAKEN
from topup.bootstrap import Application
from topup.domain.errors import ConflictError, InputError
from topup.ports import ChargeRequest, ChargeResult, PaymentCardDetails, PaymentGateway
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.reconcile import reconcile_payments
from topup.services.renewals import RenewalRequest, get_renewal, renew
from topup.services.views import RenewalView
from topup.settings import LimitSettings

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
TIMEOUT_CHARGE_TAKEN = PaymentCardDetails(
    number=CARD_TIMEOUT_CHARGE_TAKEN, expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"
POSTPAID_CARD = "+60198765432"  # a bill of 88.00 due in 5 days
CONCURRENT_BILL_PAYMENTS = 5


async def count_entries(services: Services, kind: str) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        query = (
            select(func.count())
            .select_from(t.ledger_entries)
            .where(t.ledger_entries.c.kind == kind)
        )
        return int((await connection.execute(query)).scalar_one())


class GatewayOutage:
    """Wraps a gateway; while ``down``, asking about a charge fails in transit."""

    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway
        self.name = gateway.name
        self.down = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        if self.down:
            raise ConnectionResetError("gateway outage")
        return await self._gateway.retrieve(request)


async def test_a_payment_flagged_for_staff_is_still_asked_about_and_settles_after_an_outage(
    make_app: AppFactory,
) -> None:
    """The charge was taken, but the gateway could not be asked for longer than the bound: the
    payment is flagged for staff, and once the gateway answers again it must still be resolved
    (captured and activated), not left pending forever."""
    limits = LimitSettings(payment_check_attempts_max=2)
    application = make_app(limits=limits)
    await load_demo(application.services)
    services = application.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    view = await renew(
        services,
        RenewalRequest(
            card_number=ACTIVE_CARD, plan_code="pack_5gb_7d", payment=TIMEOUT_CHARGE_TAKEN
        ),
    )
    assert view.status == "payment_pending"
    outage = GatewayOutage(services.gateway)
    services.gateway = outage
    for _ in range(limits.payment_check_attempts_max + 2):
        clock.advance(limits.payment_check_cap_s + 1)
        await reconcile_payments(services)
    flagged = await get_renewal(services, view.id)
    assert flagged.payment is not None and flagged.payment.flagged_for_staff
    assert flagged.status == "payment_pending"
    outage.down = False
    clock.advance(limits.payment_staff_recheck_s + 1)
    assert await reconcile_payments(services) == 1
    settled = await get_renewal(services, view.id)
    assert settled.status == "activating"
    assert await count_entries(services, "capture") == 1
    report = await audit(services)
    assert report.clean, report.violations


async def test_concurrent_payments_of_one_bill_charge_the_subscriber_only_once(
    demo_app: Application,
) -> None:
    services = demo_app.services
    results = await asyncio.gather(
        *(
            renew(
                services,
                RenewalRequest(
                    card_number=POSTPAID_CARD,
                    plan_code="postpaid_bill",
                    payment=GOOD_CARD,
                    idempotency_key=f"bill-{n}",
                ),
            )
            for n in range(CONCURRENT_BILL_PAYMENTS)
        ),
        return_exceptions=True,
    )
    paid = [result for result in results if isinstance(result, RenewalView)]
    refused = [
        result
        for result in results
        if isinstance(result, ConflictError) and result.code == "bill_payment_in_progress"
    ]
    assert len(paid) == 1, results
    assert len(refused) == CONCURRENT_BILL_PAYMENTS - 1, results
    assert await count_entries(services, "capture") == 1


class RefusesToAnswerAbout:
    """Wraps a gateway; asking about one payment fails with an error of the gateway's own."""

    def __init__(self, gateway: PaymentGateway, payment_id: str) -> None:
        self._gateway = gateway
        self._payment_id = payment_id
        self.name = gateway.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        if request.payment_id == self._payment_id:
            raise InputError("the payment token is not valid", code="payment_token_invalid")
        return await self._gateway.retrieve(request)


async def test_a_gateway_error_about_one_payment_does_not_stop_the_others_being_resolved(
    demo_app: Application,
) -> None:
    services = demo_app.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    views = [
        await renew(
            services,
            RenewalRequest(
                card_number=ACTIVE_CARD, plan_code="pack_5gb_7d", payment=TIMEOUT_CHARGE_TAKEN
            ),
        )
        for _ in range(2)
    ]
    assert {view.status for view in views} == {"payment_pending"}
    troubled, healthy = views
    assert troubled.payment is not None
    services.gateway = RefusesToAnswerAbout(services.gateway, troubled.payment.id)
    clock.advance(services.limits.payments.payment_check_cap_s + 1)
    assert await reconcile_payments(services) == 2
    assert (await get_renewal(services, healthy.id)).status == "activating"
    still_open = await get_renewal(services, troubled.id)
    assert still_open.status == "payment_pending"
    assert still_open.payment is not None and still_open.payment.next_check_at is not None
