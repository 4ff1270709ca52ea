"""A renewal paid from the card's own prepaid credit (auto-renewal with ``credit``): no gateway.

In one transaction: the renewal and its payment (gateway ``card_credit``, captured at once), the
card's credit lowered, the capture entry (card_credit +X, activation_pending -X: the liability to
the subscriber becomes the renewal's pending money) and the activation job, which then applies
the plan as for any paid renewal. The idempotency key makes a second call return the first
renewal: the credit is taken once.

Its refund (activation failed for good, the card refused it, or staff asked before activation)
asks no gateway either: ``refund_to_credit`` gives the credit back to the card under its row lock,
with the reverse entry (activation_pending +X, card_credit -X), in the transaction that marks the
payment and the renewal refunded and finishes the refund job, so two workers give it back once.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from topup.domain import ledger
from topup.domain.cards import check_renewable
from topup.domain.errors import ConflictError, InvariantError, NotFoundError
from topup.domain.plans import PlanKind
from topup.domain.receipts import receipt_number_from
from topup.domain.records import (
    JobKind,
    JobRecord,
    JobStatus,
    JobSubject,
    PaymentRecord,
    PaymentStatus,
    RenewalRecord,
)
from topup.domain.renewal import RenewalStatus, Transition, estimate_activation
from topup.services.context import Services
from topup.services.renewals.reads import card_unknown

CREDIT_GATEWAY = ledger.CARD_CREDIT_GATEWAY
CREDIT_METHOD = "credit"


def credit_too_low() -> ConflictError:
    return ConflictError(
        "the card's credit is less than the plan's price",
        code="credit_too_low",
        field="payment",
    )


def _receipt_number(renewal_id: str) -> str:
    digest = hashlib.sha256(b"receipt:" + renewal_id.encode()).digest()
    return receipt_number_from(int.from_bytes(digest[:8], "big") >> 4)


async def pay_with_credit(
    services: Services, *, card_id: str, plan_code: str, key: str, channel: str
) -> RenewalRecord:
    """Renew ``card_id`` with ``plan_code`` paid from its credit; the renewal (activating once
    paid). ``credit_too_low`` and the plan's and card's own refusals are raised."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        known = await uow.renewals.by_idempotency_key(key)
        if known is not None:
            return known
        card = await uow.cards.get(card_id, for_update=True)
        if card is None:
            raise card_unknown()
        plan = await uow.plans.get(plan_code)
        if plan is None:
            raise NotFoundError(
                f"there is no plan {plan_code!r}", code="plan_unknown", params={"plan": plan_code}
            )
        plan.check_can_buy(card_kind=card.kind, channel=channel, at=now)
        check_renewable(card, now, services.profile.grace_period_days)
        if plan.kind is not PlanKind.PREPAID_PACK or plan.price.currency != card.currency:
            raise ConflictError(
                "a card's credit pays data packs only",
                code="auto_renewal_credit_pays_packs_only",
                params={"plan": plan.code},
            )
        amount = plan.price
        if card.credit < amount:
            raise credit_too_low()
        renewal_id, payment_id = services.new_id(), services.new_id()
        renewal = RenewalRecord(
            id=renewal_id,
            card_id=card.id,
            plan_code=plan.code,
            kind=plan.kind,
            channel=channel,
            amount=amount,
            data_quota_mb=plan.data_quota_mb,
            validity_days=plan.validity_days,
            status=RenewalStatus.PENDING_PAYMENT,
            idempotency_key=key,
            request_fingerprint=hashlib.sha256(
                f"credit:{card.id}:{plan.code}".encode()
            ).hexdigest(),
            decline_code=None,
            created_at=now,
            updated_at=now,
            paid_at=None,
            completed_at=None,
            expected_by=None,
            contact_after=None,
            receipt_number=_receipt_number(renewal_id),
        )
        if renewal_id not in await uow.renewals.add_many([renewal]):
            raise ConflictError(
                "the renewal's key was taken meanwhile", code="conflict", retryable=True
            )
        reason = f"renewal of {plan.code} requested through {channel} (auto-renewal, credit)"
        await uow.renewals.add_event(
            renewal_id, Transition(None, RenewalStatus.PENDING_PAYMENT, now, reason)
        )
        await uow.payments.add_many(
            [
                PaymentRecord(
                    id=payment_id,
                    renewal_id=renewal_id,
                    gateway=CREDIT_GATEWAY,
                    method=CREDIT_METHOD,
                    status=PaymentStatus.SUCCEEDED,
                    amount=amount,
                    token_encrypted="",
                    brand=CREDIT_METHOD,
                    funding="",
                    last4="",
                    expiry_month=0,
                    expiry_year=0,
                    issuer_country="",
                    gateway_reference=None,
                    decline_code=None,
                    requested_at=now,
                    check_attempts=0,
                    next_check_at=None,
                    flagged_for_staff=False,
                    refund_reference=None,
                    merchant_initiated=True,
                )
            ],
            at=now,
        )
        await uow.ledger.record(
            ledger.Entry(
                ledger.EntryKind.CAPTURE,
                (
                    ledger.Posting(ledger.card_credit_account(card.id), amount),
                    ledger.Posting(ledger.activation_pending_account(renewal_id), -amount),
                ),
                memo=f"renewal {renewal_id} paid from the card's credit",
                renewal_id=renewal_id,
                card_id=card.id,
            ),
            at=now,
        )
        paid = replace(card, credit=card.credit - amount, version=card.version + 1)
        paid.check_invariants()
        await uow.cards.save(paid, expected_version=card.version, at=now)
        limits = services.limits.activation
        estimate = estimate_activation(
            paid_at=now,
            typical_delay_s=limits.activation_typical_delay_s,
            late_after_s=limits.activation_late_after_s,
        )
        await uow.renewals.move(
            renewal,
            RenewalStatus.ACTIVATING,
            at=now,
            reason="paid from the card's credit",
            paid_at=now,
            expected_by=estimate.expected_by,
            contact_after=estimate.contact_after,
        )
        await uow.jobs.enqueue(
            kind=JobKind.ACTIVATE, subject=JobSubject.renewal(renewal_id), at=now
        )
        await uow.commit()
    return replace(renewal, status=RenewalStatus.ACTIVATING, paid_at=now)


def credit_given_back_reason(reason: str, amount_text: str) -> str:
    """The renewal timeline's reason for ``activating -> refunded`` of a credit-paid renewal."""
    return f"{reason}; {amount_text} given back to the card's credit"


async def refund_to_credit(services: Services, job: JobRecord, reason: str) -> bool:
    """Give a credit-paid renewal's money back to its card (the refund ``job``'s work), once:
    the renewal locked and still activating, the job finished by this transaction, then the card
    locked and its credit raised with the reverse entry. False if there was nothing to give back
    (settled another way, or another worker did it)."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        renewal = await uow.renewals.get(job.renewal_id, for_update=True)
        if renewal is None or renewal.status is not RenewalStatus.ACTIVATING:
            if await uow.jobs.finish(
                job, status=JobStatus.DONE, at=now, error="renewal already settled"
            ):
                await uow.commit()
            return False
        if not await uow.jobs.finish(job, status=JobStatus.DONE, at=now):
            return False  # another worker's lease: it gives the credit back
        payment = await uow.payments.for_renewal(renewal.id)
        if payment is None or payment.gateway != CREDIT_GATEWAY:
            raise InvariantError(f"renewal {renewal.id} was not paid from the card's credit")
        card = await uow.cards.get(renewal.card_id, for_update=True)
        if card is None:
            raise InvariantError(f"renewal {renewal.id} names a missing card")
        if card.currency != renewal.amount.currency:
            raise InvariantError(f"renewal {renewal.id} is not in its card's currency")
        given_back = credit_given_back_reason(reason, str(renewal.amount))
        await uow.ledger.record(
            ledger.credit_refund(
                renewal_id=renewal.id,
                card_id=card.id,
                amount=renewal.amount,
                reason=given_back,
            ),
            at=now,
        )
        restored = replace(card, credit=card.credit + renewal.amount, version=card.version + 1)
        restored.check_invariants()
        await uow.cards.save(restored, expected_version=card.version, at=now)
        await uow.payments.update(
            payment.id,
            status=PaymentStatus.REFUNDED,
            refund_reference=f"credit-{renewal.id}",
            updated_at=now,
        )
        await uow.renewals.move(renewal, RenewalStatus.REFUNDED, at=now, reason=given_back)
        await uow.commit()
    return True
