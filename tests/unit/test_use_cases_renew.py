"""Renewing a card, on fakes: paid, declined, unknown then reconciled, replayed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fakes import GOOD_CARD, on_fakes
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.domain.errors import ConflictError, NotFoundError
from topup.domain.ledger import EntryKind
from topup.domain.records import JobStatus, PaymentStatus
from topup.domain.renewal import RenewalStatus
from topup.ports import PaymentCardDetails
from topup.services.renewals import RenewalRequest, get_renewal, renew

ACTIVE_CARD = "+60123456789"
DECLINED = PaymentCardDetails(
    number="4000000000009995", expiry_month=12, expiry_year=2030, cvc="123"
)
TIMEOUT_TAKEN = PaymentCardDetails(
    number="4000009990000203", expiry_month=12, expiry_year=2030, cvc="123"
)
TIMEOUT_NOT_TAKEN = PaymentCardDetails(
    number="4000009990000302", expiry_month=12, expiry_year=2030, cvc="123"
)


def request(payment: PaymentCardDetails = GOOD_CARD, **fields: Any) -> RenewalRequest:
    values: dict[str, Any] = {"card_number": ACTIVE_CARD, "plan_code": "pack_5gb_7d"}
    values.update(fields)
    return RenewalRequest(payment=payment, **values)


async def test_a_paid_renewal_captures_once_queues_its_activation_and_is_applied() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, request())
    assert view.renewal.status is RenewalStatus.ACTIVATING
    assert view.payment is not None and view.payment.status is PaymentStatus.SUCCEEDED
    assert fakes.entries(EntryKind.CAPTURE) == [view.id]
    assert fakes.jobs("activate") == [view.id]
    card_id = view.renewal.card_id
    quota_before = fakes.committed.cards[card_id].data_quota_mb
    await fakes.drain()
    final = await get_renewal(fakes.services, view.id)
    assert [step.to_status for step in final.timeline] == [
        RenewalStatus.PENDING_PAYMENT,
        RenewalStatus.ACTIVATING,
        RenewalStatus.COMPLETED,
    ]
    assert fakes.entries(EntryKind.ACTIVATION) == [view.id]
    assert fakes.committed.cards[card_id].data_quota_mb == quota_before + 5 * 1024
    assert [job.status for job in fakes.committed.jobs.values()] == [JobStatus.DONE]
    assert fakes.gateway.charges == [view.payment.id]


async def test_a_declined_card_takes_no_money_and_queues_nothing() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, request(DECLINED))
    assert view.renewal.status is RenewalStatus.DECLINED
    assert view.renewal.decline_code == "insufficient_funds"
    assert view.payment is not None and view.payment.status is PaymentStatus.DECLINED
    assert fakes.entries(EntryKind.CAPTURE) == []
    assert fakes.committed.jobs == {}
    assert (await get_renewal(fakes.services, view.id)).renewal.status is RenewalStatus.DECLINED


async def test_an_unknown_outcome_is_reconciled_by_asking_the_gateway_never_by_charging_again() -> (
    None
):
    fakes = await on_fakes()
    view = await renew(fakes.services, request(TIMEOUT_TAKEN))
    assert view.renewal.status is RenewalStatus.PAYMENT_PENDING
    assert view.payment is not None and view.payment.next_check_at is not None
    assert fakes.entries(EntryKind.CAPTURE) == []
    fakes.clock.advance(3600)
    await fakes.drain()
    final = await get_renewal(fakes.services, view.id)
    assert final.renewal.status is RenewalStatus.COMPLETED
    assert fakes.entries(EntryKind.CAPTURE) == [view.id]
    assert fakes.gateway.charges == [view.payment.id]  # asked about, never sent again


async def test_an_unknown_outcome_with_nothing_taken_ends_declined() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, request(TIMEOUT_NOT_TAKEN))
    fakes.clock.advance(3600)
    await fakes.drain()
    assert (await get_renewal(fakes.services, view.id)).renewal.status is RenewalStatus.DECLINED
    assert fakes.entries(EntryKind.CAPTURE) == []


async def test_the_same_key_and_request_replay_the_first_renewal() -> None:
    fakes = await on_fakes()
    first = await renew(fakes.services, request(idempotency_key="once"))
    again = await renew(fakes.services, request(idempotency_key="once"))
    assert again.replayed and again.id == first.id
    assert len(fakes.committed.renewals) == 1
    assert len(fakes.gateway.charges) == 1


async def test_the_same_key_with_another_request_is_refused() -> None:
    fakes = await on_fakes()
    await renew(fakes.services, request(idempotency_key="once"))
    with pytest.raises(ConflictError) as caught:
        await renew(fakes.services, request(idempotency_key="once", plan_code="reload_10"))
    assert caught.value.code == "idempotency_key_reused"


async def test_an_unknown_card_is_refused_and_nothing_is_written() -> None:
    fakes = await on_fakes()
    with pytest.raises(NotFoundError) as caught:
        await renew(fakes.services, request(card_number="+60129999999"))
    assert caught.value.code == "card_unknown"
    assert fakes.committed.renewals == {} and fakes.gateway.charges == []


async def test_a_paid_renewal_with_an_email_gets_its_receipt_once_activated() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, request(receipt_email="payer@example.com"))
    assert fakes.jobs("receipt") == [view.id]
    await fakes.drain()
    mailer = fakes.services.mailer
    assert isinstance(mailer, MemoryMailer)
    # (The worker also reminds a demo card in grace by e-mail: only the payer's mail is looked at.)
    [receipt] = mailer.to("payer@example.com")
    assert view.renewal.receipt_number is not None
    assert view.renewal.receipt_number in receipt.subject
