"""Renew a card: validate, record, charge (with no transaction open), then record the outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from topup.domain import ledger
from topup.domain.card_number import CardNumberKind, parse_card_number
from topup.domain.cards import Card, check_renewable
from topup.domain.errors import (
    ConflictError,
    DuplicateError,
    InputError,
    InvariantError,
    NotFoundError,
    TopupError,
)
from topup.domain.money import Money
from topup.domain.plans import CHANNELS, PlanKind
from topup.domain.records import PaymentRecord, RenewalRecord
from topup.domain.renewal import (
    RenewalStatus,
    Transition,
    backoff_s,
    estimate_activation,
)
from topup.ports import CardDetails, ChargeRequest, ChargeResult, GatewayOutcome, UnitOfWork
from topup.services.context import Services
from topup.services.views import RenewalView

IDEMPOTENCY_KEY_LENGTH_MAX = 255


@dataclass(frozen=True)
class RenewalRequest:
    card_number: str
    plan_code: str
    payment: CardDetails
    channel: str = "web"
    idempotency_key: str | None = None
    method: str = "credit_card"


async def find_card(uow: UnitOfWork, services: Services, text: str) -> Card:
    number = parse_card_number(text, services.profile)
    if number.kind is CardNumberKind.MSISDN:
        card: Card | None = await uow.cards.by_number(msisdn=number.value)
    else:
        card = await uow.cards.by_number(iccid=number.value)
    if card is None:
        raise NotFoundError(
            "no card with this number is registered with us; check the number on your receipt "
            "or SIM carrier",
            code="card_unknown",
            field="card_number",
        )
    return card


def _fingerprint(request: RenewalRequest, card_id: str, brand: str, last4: str, expiry: str) -> str:
    material = json.dumps(
        [card_id, request.plan_code, request.channel, request.method, brand, last4, expiry]
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _check_request(request: RenewalRequest) -> str:
    if request.channel not in CHANNELS:
        raise InputError(
            f"unknown channel {request.channel!r}; one of {', '.join(CHANNELS)}",
            code="channel_unknown",
            field="channel",
        )
    key = request.idempotency_key
    if key is None:
        return ""
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InputError(
            f"an idempotency key is 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
            code="idempotency_key_invalid",
            field="idempotency_key",
        )
    return key


async def renew(services: Services, request: RenewalRequest) -> RenewalView:
    """Create a renewal and pay for it. Same key + same request returns the same renewal."""
    key = _check_request(request) or f"auto-{services.new_id()}"
    instrument = await services.gateway.tokenize(request.payment)  # raises on bad card fields
    expiry = f"{instrument.expiry_month:02d}/{instrument.expiry_year}"
    now = services.clock.now()
    renewal_id = services.new_id()
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, request.card_number)
        fingerprint = _fingerprint(request, card.id, instrument.brand, instrument.last4, expiry)
        existing = await uow.renewals.by_idempotency_key(key)
        if existing is not None:
            await uow.rollback()  # release the transaction before reading the replay
            return await _replay(uow, existing.id, fingerprint)
        plan = await uow.plans.get(request.plan_code)
        if plan is None:
            raise NotFoundError(
                f"there is no plan {request.plan_code!r}", code="plan_unknown", field="plan"
            )
        plan.check_can_buy(card_kind=card.kind, channel=request.channel, at=now)
        if plan.kind is PlanKind.POSTPAID_BILL:
            # Payments of one bill take turns on the card's row lock: without it, concurrent
            # callers all find no payment in progress and the bill is charged several times.
            locked: Card | None = await uow.cards.get(card.id, for_update=True)
            if locked is None:
                raise InvariantError(f"card {card.id} disappeared")
            card = locked
        check_renewable(card, now, services.profile.grace_period_days)
        amount = _amount_due(card, plan.kind, plan.price)
        if plan.kind is PlanKind.POSTPAID_BILL:
            in_progress = await uow.renewals.open_for_card(card.id, kind=plan.kind.value)
            if in_progress is not None and in_progress.idempotency_key == key:
                # The same request, let through while we waited for the card's lock: a replay.
                await uow.rollback()
                return await _replay(uow, in_progress.id, fingerprint)
            if in_progress is not None:
                raise ConflictError(
                    f"a payment of this bill is already in progress (renewal {in_progress.id}); "
                    "check its status before paying again",
                    code="bill_payment_in_progress",
                )
        try:
            await uow.renewals.add(
                {
                    "id": renewal_id,
                    "card_id": card.id,
                    "plan_code": plan.code,
                    "kind": plan.kind.value,
                    "channel": request.channel,
                    "amount_minor": amount.minor,
                    "currency": amount.currency,
                    "data_quota_mb": plan.data_quota_mb,
                    "validity_days": plan.validity_days,
                    "status": RenewalStatus.PENDING_PAYMENT.value,
                    "idempotency_key": key,
                    "request_fingerprint": fingerprint,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        except DuplicateError:
            await uow.rollback()
            return await _replay_after_race(uow, key, fingerprint)
        await uow.renewals.add_event(
            renewal_id,
            Transition(
                None,
                RenewalStatus.PENDING_PAYMENT,
                now,
                f"renewal of {plan.code} requested through {request.channel}",
            ),
        )
        payment_id = services.new_id()
        await uow.payments.add(
            {
                "id": payment_id,
                "renewal_id": renewal_id,
                "gateway": services.gateway.name,
                "method": request.method,
                "status": "not_sent",
                "amount_minor": amount.minor,
                "currency": amount.currency,
                "token_encrypted": services.tokens.seal(instrument.token),
                "brand": instrument.brand,
                "funding": instrument.funding,
                "last4": instrument.last4,
                "expiry_month": instrument.expiry_month,
                "expiry_year": instrument.expiry_year,
                "issuer_country": instrument.issuer_country,
                "requested_at": now,
                "check_attempts": 0,
                # If we die before recording the outcome, the reconciler asks the gateway then.
                "next_check_at": now + dt.timedelta(seconds=services.limits.gateway_timeout_s * 2),
                "flagged_for_staff": False,
                "created_at": now,
                "updated_at": now,
            }
        )
        await uow.commit()
    charge = ChargeRequest(
        payment_id=payment_id,
        token=instrument.token,
        amount=amount,
        description=f"renewal {renewal_id} plan {plan.code}",
        requested_at=now,
    )
    result = await send_charge(services, charge)
    return await record_charge_result(services, renewal_id, result)


def _amount_due(card: Card, kind: PlanKind, price: Money) -> Money:
    if kind is PlanKind.POSTPAID_BILL:
        if card.bill_due.is_zero:
            raise ConflictError("this card has no bill to pay", code="nothing_to_pay")
        return card.bill_due
    if price.currency != card.currency:
        raise ConflictError(
            "this plan is priced in another currency", code="plan_currency_mismatch"
        )
    return price


async def _replay(uow: UnitOfWork, renewal_id: str, fingerprint: str) -> RenewalView:
    """Read on the caller's connection: taking a second one while holding the first would let
    a burst of replays exhaust the pool and wait on each other until the pool timeout."""
    view = await _view(uow, renewal_id)
    if view.renewal.request_fingerprint != fingerprint:
        raise ConflictError(
            "this idempotency key was already used for a different renewal",
            code="idempotency_key_reused",
            field="idempotency_key",
        )
    return RenewalView(view.renewal, view.payment, view.timeline, view.card_number, replayed=True)


async def _replay_after_race(uow: UnitOfWork, key: str, fingerprint: str) -> RenewalView:
    existing: RenewalRecord | None = await uow.renewals.by_idempotency_key(key)
    if existing is None:
        raise ConflictError(
            "this renewal is being created; try again",
            code="idempotency_key_in_use",
            retryable=True,
        )
    return await _replay(uow, existing.id, fingerprint)


async def send_charge(services: Services, charge: ChargeRequest) -> ChargeResult:
    """Call the gateway with a deadline. Whatever goes wrong in transit means 'unknown'."""
    try:
        async with asyncio.timeout(services.limits.gateway_timeout_s):
            return await services.gateway.charge(charge)
    except TimeoutError:
        return ChargeResult(GatewayOutcome.UNKNOWN, message="gateway timed out")
    except TopupError as error:  # the gateway refused the request itself: nothing was charged
        return ChargeResult(GatewayOutcome.DECLINED, decline_code=error.code, message=error.message)
    except OSError as error:
        return ChargeResult(
            GatewayOutcome.UNKNOWN, message=f"gateway transport error: {type(error).__name__}"
        )


async def record_charge_result(
    services: Services, renewal_id: str, result: ChargeResult
) -> RenewalView:
    """Apply what the gateway said. Safe to call twice or concurrently: the second call sees the
    renewal already moved on and changes nothing."""
    now = services.clock.now()
    limits = services.limits
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(renewal_id, for_update=True)
        payment: PaymentRecord | None = await uow.payments.for_renewal(renewal_id, for_update=True)
        if renewal is None or payment is None:
            raise NotFoundError(f"no renewal {renewal_id}", code="renewal_unknown")
        if renewal.status not in OPEN_RENEWAL_STATUSES:
            return await _view(uow, renewal_id)
        outcome = result.outcome
        age_s = (now - renewal.created_at).total_seconds()
        if outcome is GatewayOutcome.SUCCEEDED:
            await _capture(services, uow, renewal, payment, result, now)
        elif outcome is GatewayOutcome.DECLINED:
            await _close_unpaid(
                uow,
                renewal,
                payment,
                now,
                RenewalStatus.DECLINED,
                f"payment declined: {result.decline_code}",
                result.decline_code,
            )
        elif result.requires_action and age_s > limits.requires_action_timeout_s:
            # The payer never completed the step: abandoned before payment, nothing was taken.
            await _close_unpaid(
                uow,
                renewal,
                payment,
                now,
                RenewalStatus.CANCELLED,
                f"the payer did not {result.requires_action} in time",
                None,
            )
        elif result.requires_action:
            await _await_payer(services, uow, renewal, payment, result, now)
        elif (
            outcome is GatewayOutcome.NOT_SENT
            and payment.check_attempts >= limits.charge_send_attempts_max
        ):
            await _close_unpaid(
                uow,
                renewal,
                payment,
                now,
                RenewalStatus.DECLINED,
                "the payment gateway could not be reached; nothing was charged",
                "gateway_unreachable",
            )
        else:  # PENDING, UNKNOWN, or NOT_SENT with attempts left: ask (or send) again later
            await _check_later(services, uow, renewal, payment, result, now)
        view = await _view(uow, renewal_id)  # read inside the transaction: no second BEGIN
        await uow.commit()
        return view


OPEN_RENEWAL_STATUSES = (
    RenewalStatus.PENDING_PAYMENT,
    RenewalStatus.REQUIRES_ACTION,
    RenewalStatus.PAYMENT_PENDING,
)


async def _close_unpaid(
    uow: UnitOfWork,
    renewal: RenewalRecord,
    payment: PaymentRecord,
    now: dt.datetime,
    status: RenewalStatus,
    reason: str,
    decline_code: str | None,
) -> None:
    """End a renewal on which no money was taken: declined or cancelled."""
    await uow.payments.update(
        payment.id,
        status="declined" if status is RenewalStatus.DECLINED else "cancelled",
        decline_code=decline_code,
        next_check_at=None,
        updated_at=now,
    )
    await uow.renewals.move(
        renewal,
        status,
        at=now,
        reason=reason,
        decline_code=decline_code,
    )


async def _await_payer(
    services: Services,
    uow: UnitOfWork,
    renewal: RenewalRecord,
    payment: PaymentRecord,
    result: ChargeResult,
    now: dt.datetime,
) -> None:
    """The payer must act (payment password / 3-D Secure); check again once the time is up."""
    timeout_s = services.limits.requires_action_timeout_s
    await uow.payments.update(
        payment.id,
        status="requires_action",
        gateway_reference=result.gateway_reference,
        next_check_at=renewal.created_at + dt.timedelta(seconds=timeout_s + 1),
        updated_at=now,
    )
    if renewal.status is not RenewalStatus.REQUIRES_ACTION:
        await uow.renewals.move(
            renewal,
            RenewalStatus.REQUIRES_ACTION,
            at=now,
            reason=f"the payer must {result.requires_action}",
        )


async def _check_later(
    services: Services,
    uow: UnitOfWork,
    renewal: RenewalRecord,
    payment: PaymentRecord,
    result: ChargeResult,
    now: dt.datetime,
) -> None:
    """Outcome not known yet: schedule the next question to the gateway, with backoff."""
    limits = services.limits
    delay_s = result.retry_after_s or backoff_s(
        attempt=payment.check_attempts + 1,
        base_s=limits.payment_check_base_s,
        cap_s=limits.payment_check_cap_s,
        jitter_fraction=services.random.random(),
    )
    outcome = result.outcome
    await uow.payments.update(
        payment.id,
        status="not_sent" if outcome is GatewayOutcome.NOT_SENT else outcome.value,
        gateway_reference=result.gateway_reference,
        next_check_at=now + dt.timedelta(seconds=delay_s),
        updated_at=now,
    )
    if (
        outcome is not GatewayOutcome.NOT_SENT
        and renewal.status is not RenewalStatus.PAYMENT_PENDING
    ):
        await uow.renewals.move(
            renewal,
            RenewalStatus.PAYMENT_PENDING,
            at=now,
            reason=f"payment outcome not yet known ({outcome.value})",
        )


async def _capture(
    services: Services,
    uow: UnitOfWork,
    renewal: RenewalRecord,
    payment: PaymentRecord,
    result: ChargeResult,
    now: dt.datetime,
) -> None:
    """Money taken: the capture entry, the renewal's move to activating and the activation job
    are written in one transaction (the transactional outbox)."""
    await uow.ledger.record(
        ledger.capture(
            renewal_id=renewal.id,
            card_id=renewal.card_id,
            gateway=payment.gateway,
            amount=renewal.amount,
        ),
        at=now,
    )
    await uow.payments.update(
        payment.id,
        status="succeeded",
        gateway_reference=result.gateway_reference,
        next_check_at=None,
        updated_at=now,
    )
    estimate = estimate_activation(
        paid_at=now,
        typical_delay_s=services.limits.activation_typical_delay_s,
        late_after_s=services.limits.activation_late_after_s,
    )
    await uow.renewals.move(
        renewal,
        RenewalStatus.ACTIVATING,
        at=now,
        reason=f"payment captured ({result.gateway_reference or 'no reference'})",
        paid_at=now,
        expected_by=estimate.expected_by,
        contact_after=estimate.contact_after,
    )
    await uow.jobs.enqueue(kind="activate", renewal_id=renewal.id, at=now)


async def _view(uow: UnitOfWork, renewal_id: str) -> RenewalView:
    found: tuple[RenewalRecord, str] | None = await uow.renewals.with_card_number(renewal_id)
    if found is None:
        raise NotFoundError(f"no renewal {renewal_id}", code="renewal_unknown", field="renewal_id")
    renewal, card_number = found
    payment = await uow.payments.for_renewal(renewal_id)
    timeline = await uow.renewals.timeline(renewal_id)
    return RenewalView(renewal, payment, timeline, card_number)


async def get_renewal(services: Services, renewal_id: str) -> RenewalView:
    async with services.unit_of_work() as uow:
        return await _view(uow, renewal_id)
