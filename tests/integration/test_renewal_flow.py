"""A renewal end to end through the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from topup.adapters.clock import FixedClock
from topup.bootstrap import Application
from topup.domain.errors import ConflictError, InputError, NotFoundError
from topup.entrypoints.worker import work_once
from topup.ports import PaymentCardDetails
from topup.services import queries
from topup.services.audit import audit
from topup.services.renewals import RenewalRequest, get_renewal, renew

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "012-345 6789"


def request(
    card: str = ACTIVE_CARD,
    plan: str = "pack_5gb_7d",
    payment: PaymentCardDetails = GOOD_CARD,
    **kw: Any,
) -> RenewalRequest:
    return RenewalRequest(card_number=card, plan_code=plan, payment=payment, **kw)


async def test_paid_renewal_is_activated_and_extends_validity_from_its_end(
    demo_app: Application,
) -> None:
    services = demo_app.services
    before = await queries.balance(services, ACTIVE_CARD)
    view = await renew(services, request())
    assert view.status == "activating"
    assert view.renewal.expected_by is not None
    await work_once(services)
    after = await queries.balance(services, ACTIVE_CARD)
    final = await get_renewal(services, view.id)
    assert final.status == "completed"
    assert [step.to_status.value for step in final.timeline] == [
        "pending_payment",
        "activating",
        "completed",
    ]
    assert after.data_quota_mb == before.data_quota_mb + 5 * 1024
    assert after.validity_end > before.validity_end
    report = await audit(services)
    assert report.clean, report.violations


async def test_reload_adds_credit_that_the_ledger_agrees_with(demo_app: Application) -> None:
    services = demo_app.services
    await renew(services, request(plan="reload_10"))
    await work_once(services)
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.credit.minor == 500 + 1000
    assert (await audit(services)).clean


async def test_timeout_with_charge_taken_is_resolved_by_asking_not_charging(
    demo_app: Application,
) -> None:
    services = demo_app.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    timeout_taken = PaymentCardDetails(
        number="4000009990000203", expiry_month=12, expiry_year=2030, cvc="123"
    )
    view = await renew(services, request(payment=timeout_taken))
    assert view.status == "payment_pending"
    assert view.payment is not None and view.payment.next_check_at is not None
    clock.advance(3600)
    await work_once(services)  # reconciler asks; capture + job
    await work_once(services)  # activation
    final = await get_renewal(services, view.id)
    assert final.status == "completed"
    assert (await audit(services)).clean


async def test_permanent_network_failure_refunds_in_full_exactly_once(
    demo_app: Application,
) -> None:
    services = demo_app.services
    view = await renew(services, request(card="+60123400000", plan="reload_10"))
    for _ in range(3):
        await work_once(services)
    final = await get_renewal(services, view.id)
    assert final.status == "refunded"
    assert final.payment is not None and final.payment.status == "refunded"
    assert (await queries.balance(services, "+60123400000")).credit.minor == 0
    assert (await audit(services)).clean


async def test_paying_the_postpaid_bill_lifts_the_suspension(demo_app: Application) -> None:
    services = demo_app.services
    await work_once(services)  # lifecycle marks the overdue card suspended
    assert (await queries.balance(services, "+60198760001")).status == "suspended"
    view = await renew(services, request(card="+60198760001", plan="postpaid_bill"))
    assert view.renewal.amount.minor == 12000
    await work_once(services)
    after = await queries.balance(services, "+60198760001")
    assert after.status == "active"
    assert after.bill_due.minor == 0
    assert (await audit(services)).clean


async def test_expired_card_is_refused_before_charging(demo_app: Application) -> None:
    with pytest.raises(ConflictError) as caught:
        await renew(demo_app.services, request(card="+60123450002"))
    assert caught.value.code == "card_expired"


async def test_card_in_grace_is_renewed_from_now(demo_app: Application) -> None:
    services = demo_app.services
    await renew(services, request(card="+60123450001", plan="pack_5gb_7d"))
    await work_once(services)
    after = await queries.balance(services, "+60123450001")
    assert after.status == "active"
    assert after.validity_end is not None
    assert after.validity_end.astimezone(dt.UTC).date() == dt.date(2026, 12, 2)


@pytest.mark.parametrize(
    ("card", "plan", "code"),
    [
        ("", "pack_5gb_7d", "card_number_empty"),
        ("+60 12 999 9999", "pack_5gb_7d", "card_unknown"),
        (ACTIVE_CARD, "no_such_plan", "plan_unknown"),
        (ACTIVE_CARD, "postpaid_bill", "plan_not_for_card_kind"),
    ],
)
async def test_bad_requests_get_their_own_code(
    demo_app: Application, card: str, plan: str, code: str
) -> None:
    with pytest.raises((InputError, NotFoundError, ConflictError)) as caught:
        await renew(demo_app.services, request(card=card, plan=plan))
    assert caught.value.code == code


async def test_same_key_same_request_returns_the_same_renewal(demo_app: Application) -> None:
    services = demo_app.services
    first = await renew(services, request(idempotency_key="key-1"))
    second = await renew(services, request(idempotency_key="key-1"))
    assert second.id == first.id
    assert second.replayed


async def test_same_key_with_other_body_is_rejected(demo_app: Application) -> None:
    services = demo_app.services
    await renew(services, request(idempotency_key="key-2"))
    with pytest.raises(ConflictError) as caught:
        await renew(services, request(idempotency_key="key-2", plan="pack_30gb_30d"))
    assert caught.value.code == "idempotency_key_reused"


async def test_no_card_number_or_cvc_is_stored(demo_app: Application) -> None:
    services = demo_app.services
    await renew(services, request())
    async with services.unit_of_work() as uow:
        from sqlalchemy import text

        rows = (await uow.connection.execute(text("SELECT * FROM payments"))).all()  # type: ignore[attr-defined]
    dump = repr(rows)
    assert "4242424242424242" not in dump
    assert "tok_sbx" not in dump
    assert "4242" in dump  # last four digits are kept


async def test_authentication_never_completed_ends_cancelled_with_nothing_taken(
    demo_app: Application,
) -> None:
    services = demo_app.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    needs_authentication = PaymentCardDetails(
        number="4000000000003220", expiry_month=12, expiry_year=2030, cvc="123"
    )
    view = await renew(services, request(payment=needs_authentication))
    assert view.status == "requires_action"
    assert view.payment is not None and view.payment.next_check_at is not None
    clock.advance(services.limits.payments.requires_action_timeout_s + 2)
    await work_once(services)
    final = await get_renewal(services, view.id)
    assert final.status == "cancelled"
    assert (await audit(services)).clean


async def test_a_second_payment_of_a_bill_in_progress_is_refused_before_charging(
    demo_app: Application,
) -> None:
    services = demo_app.services
    await renew(services, request(card="+60198765432", plan="postpaid_bill"))
    with pytest.raises(ConflictError) as caught:
        await renew(services, request(card="+60198765432", plan="postpaid_bill"))
    assert caught.value.code == "bill_payment_in_progress"


async def test_cards_waiting_out_their_grace_do_not_starve_overdue_postpaid_cards(
    make_app: Any,
) -> None:
    """Regression: the lifecycle batch used to fill with cards in grace that do not move."""
    import dataclasses

    from topup.domain.cards import Card, CardKind, CardStatus
    from topup.domain.money import Money
    from topup.services.billing import issue_postpaid_bill
    from topup.services.demo import iccid_for
    from topup.services.lifecycle import advance_cards
    from topup.settings import LimitSettings

    application = make_app(limits=LimitSettings(lifecycle_batch_size=5))
    services = application.services
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        for index in range(5):
            await uow.cards.add(
                Card(
                    id=f"grace-{index}",
                    msisdn=f"+6012555000{index}",
                    iccid=iccid_for(100 + index, "60"),
                    kind=CardKind.PREPAID,
                    status=CardStatus.GRACE,
                    currency="MYR",
                    credit=Money.zero("MYR"),
                    data_quota_mb=0,
                    validity_end=now - dt.timedelta(days=3),
                    bill_due=Money.zero("MYR"),
                    bill_due_date=None,
                ),
                at=now,
            )
        postpaid = Card(
            id="postpaid-overdue",
            msisdn="+60195550000",
            iccid=iccid_for(200, "60"),
            kind=CardKind.POSTPAID,
            status=CardStatus.ACTIVE,
            currency="MYR",
            credit=Money.zero("MYR"),
            data_quota_mb=0,
            validity_end=None,
            bill_due=Money.zero("MYR"),
            bill_due_date=None,
        )
        await uow.cards.add(postpaid, at=now)
        await uow.commit()
    await issue_postpaid_bill(
        services,
        card_id=postpaid.id,
        amount=Money(5000, "MYR"),
        due_date=now - dt.timedelta(days=1),
    )
    await advance_cards(services)
    await advance_cards(services)
    summary = await queries.balance(services, "+60195550000")
    assert summary.status == "suspended"
    async with services.unit_of_work() as uow:
        stored = await uow.cards.get(postpaid.id)
    assert dataclasses.asdict(stored)["status"] == CardStatus.SUSPENDED


async def test_a_renewal_paid_in_grace_is_honoured_when_activation_lands_after_grace_ends(
    demo_app: Application,
) -> None:
    services = demo_app.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    slow_network = services.network
    grace_card = "+60123450001"  # validity ended 3 days ago; grace ends in 27 days
    clock.advance(26 * 86_400)
    view = await renew(services, request(card=grace_card, plan="reload_10"))
    assert view.status == "activating"

    class Unreachable:
        async def apply(self, request: object) -> object:
            raise OSError("network down")

    services.network = Unreachable()  # type: ignore[assignment]
    await work_once(services)  # the activation fails transiently
    clock.advance(2 * 86_400)  # grace has ended meanwhile
    await work_once(services)  # lifecycle must not expire a card with a paid renewal on its way
    services.network = slow_network
    for _ in range(5):
        clock.advance(services.limits.activation.activation_backoff_cap_s)
        await work_once(services)
    final = await get_renewal(services, view.id)
    assert final.status == "completed"
    after = await queries.balance(services, grace_card)
    assert after.status == "active"
    assert after.credit.minor == 200 + 1000
    assert (await audit(services)).clean


async def test_a_plan_edited_after_payment_delivers_what_was_paid_for(
    demo_app: Application,
) -> None:
    import dataclasses

    services = demo_app.services
    before = await queries.balance(services, ACTIVE_CARD)
    view = await renew(services, request(plan="pack_5gb_7d"))
    async with services.unit_of_work() as uow:
        plan = await uow.plans.get("pack_5gb_7d")
        await uow.plans.upsert(dataclasses.replace(plan, data_quota_mb=1, validity_days=1))
        await uow.commit()
    await work_once(services)
    assert (await get_renewal(services, view.id)).status == "completed"
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.data_quota_mb == before.data_quota_mb + 5 * 1024
