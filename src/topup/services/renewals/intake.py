"""Renew a card: admit the request (card, plan, method, limits) and record the renewal and its
payment in one transaction, then charge with no transaction open and record the outcome."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from topup.domain.card_number import CardNumber, CardNumberKind, parse_card_number
from topup.domain.cards import Card, check_renewable
from topup.domain.errors import (
    ConflictError,
    NotFoundError,
    TopupError,
)
from topup.domain.money import Money
from topup.domain.plans import Plan, PlanKind
from topup.domain.receipts import receipt_number_from
from topup.domain.records import PaymentRecord, PaymentStatus, RenewalRecord
from topup.domain.renewal import (
    RenewalStatus,
    Transition,
)
from topup.ports import (
    ChargeRequest,
    PaymentToken,
    UnitOfWork,
)
from topup.services.batching import Batcher
from topup.services.context import Services
from topup.services.fingerprints import payment_card_fingerprint
from topup.services.renewals.charges import record_charge_result, send_charge
from topup.services.renewals.reads import card_unknown, replay, replay_after_race
from topup.services.renewals.requests import RenewalRequest, check_request, payment_token_for
from topup.services.views import RenewalView


def payment_card_locked(until: dt.datetime, now: dt.datetime) -> ConflictError:
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return ConflictError(
        f"This card is locked for {minutes} more minutes after too many wrong payment "
        "passwords. Try again later or pay another way.",
        code="payment_method_locked",
        retryable=True,
        field="payment",
        params={"minutes": str(minutes)},
    )


def _fingerprint(request: RenewalRequest, card_id: str, brand: str, last4: str, expiry: str) -> str:
    parts = [card_id, request.plan_code, request.channel, request.method, brand, last4, expiry]
    if request.region is not None:  # (renewals made before regions existed keep their prints)
        parts.append(request.region)
    material = json.dumps(parts)
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class _CheckedRequest:
    """A renewal asked for, checked as far as can be done without the database."""

    request: RenewalRequest
    key: str
    number: CardNumber
    payment_token: PaymentToken
    instrument_fingerprint: str
    renewal_id: str
    payment_id: str
    gateway_name: str


@dataclass(frozen=True)
class _Admitted:
    renewal_id: str
    plan_code: str
    amount: Money
    requested_at: dt.datetime
    fingerprint: str


@dataclass(frozen=True)
class _KeyUsed:
    """The idempotency key names an earlier renewal (``None``: one another caller is creating)."""

    renewal_id: str | None
    fingerprint: str


async def renew(services: Services, request: RenewalRequest) -> RenewalView:
    """Create a renewal and pay for it. Same key + same request returns the same renewal.

    Concurrent calls are admitted together in one transaction, and their payment outcomes
    recorded together in another (see ``batching``); the gateway is called in between, with no
    transaction open."""
    key = check_request(request) or f"auto-{services.new_id()}"
    renewal_id = services.new_id()
    payment_id = services.new_id()
    gateway, payment_token = await payment_token_for(services, request)
    number = parse_card_number(request.card_number, services.profile)
    fingerprint = payment_card_fingerprint(services, gateway.name, payment_token)
    checked = _CheckedRequest(
        request, key, number, payment_token, fingerprint, renewal_id, payment_id, gateway.name
    )
    admission = await _intake(services).submit(checked)
    if isinstance(admission, _KeyUsed):
        async with services.unit_of_work() as uow:
            if admission.renewal_id is None:
                return await replay_after_race(uow, key, admission.fingerprint)
            return await replay(uow, admission.renewal_id, admission.fingerprint)
    charge = ChargeRequest(
        payment_id=payment_id,
        token=payment_token.token,
        amount=admission.amount,
        description=f"renewal {renewal_id} plan {admission.plan_code}",
        requested_at=admission.requested_at,
        merchant_initiated=request.merchant_initiated,
    )
    result = await send_charge(gateway, services.limits, charge)
    return await record_charge_result(services, renewal_id, result)


def _intake(services: Services) -> Batcher[_CheckedRequest, _Admitted | _KeyUsed]:
    return services.batcher("renewal_intake", _admit_all, key=lambda checked: checked.key)


async def _admit_all(
    services: Services, checked_requests: list[_CheckedRequest]
) -> list[_Admitted | _KeyUsed | Exception]:
    """Admit a batch of renewal requests in one transaction: each one's card and plan are checked,
    and the accepted renewals and their payments are written with a few set-based statements.

    A key used before is found by the insert itself (the unique key leaves that row out), so the
    usual case costs no look-up; the caller then replays what the key first made. A request
    refused here is looked up by key too: a retry of a request that went through is answered
    with its renewal, even if the card or plan has changed since."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        intake = _Intake(services, uow, now)
        await intake.load(checked_requests)
        outcomes: list[_Admitted | _KeyUsed | Exception] = []
        for checked in checked_requests:
            try:
                outcomes.append(await intake.admit(checked))
            except TopupError as error:
                outcomes.append(error)
        refused = [
            checked.key
            for checked, outcome in zip(checked_requests, outcomes, strict=True)
            if isinstance(outcome, TopupError) and checked.key in intake.fingerprints
        ]
        known = await uow.renewals.by_idempotency_keys(refused)
        # In key checked: two batches inserting the same keys wait for each other, never deadlock.
        renewals = sorted(intake.renewals, key=lambda renewal: renewal.idempotency_key)
        inserted = await uow.renewals.add_many(renewals)
        for index, (checked, outcome) in enumerate(zip(checked_requests, outcomes, strict=True)):
            if checked.key in known:
                outcomes[index] = _KeyUsed(known[checked.key].id, intake.fingerprints[checked.key])
            elif isinstance(outcome, _Admitted) and outcome.renewal_id not in inserted:
                # The key was used before, or by another transaction just now.
                outcomes[index] = _KeyUsed(None, outcome.fingerprint)
        await uow.renewals.add_events(
            [(renewal_id, change) for renewal_id, change in intake.events if renewal_id in inserted]
        )
        await uow.payments.add_many(
            [payment for payment in intake.payments if payment.renewal_id in inserted], at=now
        )
        await uow.commit()
    return outcomes


class _Intake:
    """What one intake transaction knows: the cards, plans and keys its requests name."""

    def __init__(self, services: Services, uow: UnitOfWork, now: dt.datetime) -> None:
        self.services = services
        self.uow = uow
        self.now = now
        self.renewals: list[RenewalRecord] = []
        self.payments: list[PaymentRecord] = []
        self.events: list[tuple[str, Transition]] = []
        self._cards: dict[tuple[CardNumberKind, str], Card] = {}
        self._plans: dict[str, Plan] = {}
        self.fingerprints: dict[
            str, str
        ] = {}  # by idempotency key, for requests whose card is known
        self._locked: dict[str, Card] = {}
        self._locked_payment_cards: dict[str, dt.datetime] = {}
        # What each wallet account has paid or has waiting today, per method (daily limits).
        self._wallet_totals: dict[tuple[str, str], int] = {}
        self._bills_in_batch: dict[str, str] = {}

    async def load(self, checked_requests: list[_CheckedRequest]) -> None:
        uow = self.uow
        numbers = [checked.number for checked in checked_requests]
        cards: list[Card] = await uow.cards.by_numbers(
            msisdns=[n.value for n in numbers if n.kind is CardNumberKind.MSISDN],
            iccids=[n.value for n in numbers if n.kind is CardNumberKind.ICCID],
        )
        for card in cards:
            self._cards[(CardNumberKind.MSISDN, card.msisdn)] = card
            self._cards[(CardNumberKind.ICCID, card.iccid)] = card
        self._plans = await uow.plans.get_many(
            [checked.request.plan_code for checked in checked_requests]
        )
        self._locked_payment_cards = await uow.payment_card_locks.locked(
            [checked.instrument_fingerprint for checked in checked_requests], now=self.now
        )
        zone = ZoneInfo(self.services.profile.time_zone)
        start_of_day = self.now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        wallet_accounts = [
            checked.instrument_fingerprint
            for checked in checked_requests
            if checked.request.wallet_account
        ]
        await uow.payments.lock_wallet_accounts(wallet_accounts)  # daily limits, one at a time
        self._wallet_totals = await uow.payments.wallet_totals_since(
            wallet_accounts, since=start_of_day
        )
        # Payments of one bill take turns on the card's row lock: without it, concurrent callers
        # all find no payment in progress and the bill is charged several times. Locked in id
        # checked, all at once, so that two batches cannot deadlock.
        bill_cards = []
        for checked in checked_requests:
            found = self._cards.get((checked.number.kind, checked.number.value))
            plan = self._plans.get(checked.request.plan_code)
            if found is not None and plan is not None and plan.kind is PlanKind.POSTPAID_BILL:
                bill_cards.append(found.id)
        self._locked = await uow.cards.get_many(bill_cards, for_update=True)

    async def admit(self, checked: _CheckedRequest) -> _Admitted | _KeyUsed:
        request, now, services = checked.request, self.now, self.services
        card = self._cards.get((checked.number.kind, checked.number.value))
        if card is None:
            raise card_unknown()
        payment_token = checked.payment_token
        expiry = f"{payment_token.expiry_month:02d}/{payment_token.expiry_year}"
        fingerprint = _fingerprint(
            request, card.id, payment_token.brand, payment_token.last4, expiry
        )
        self.fingerprints[checked.key] = fingerprint
        plan = self._plans.get(request.plan_code)
        if plan is None:
            raise NotFoundError(
                f"there is no plan {request.plan_code!r}",
                code="plan_unknown",
                field="plan",
                params={"plan": request.plan_code},
            )
        plan.check_can_buy(card_kind=card.kind, channel=request.channel, at=now)
        locked_until = self._locked_payment_cards.get(checked.instrument_fingerprint)
        if locked_until is not None:
            raise payment_card_locked(locked_until, now)
        if plan.kind is PlanKind.POSTPAID_BILL:
            card = self._locked.get(card.id, card)
        check_renewable(card, now, services.profile.grace_period_days)
        amount = amount_due(card, plan.kind, plan.price)
        method = services.methods.choose(
            request.method, channel=request.channel, region=request.region, amount=amount
        )
        if plan.kind is PlanKind.POSTPAID_BILL:
            in_progress = self._bills_in_batch.get(card.id)
            if in_progress is None:
                open_one = await self.uow.renewals.open_for_card(card.id, kind=plan.kind.value)
                if open_one is not None and open_one.idempotency_key == checked.key:
                    # The same request, let through while we waited for the card's lock.
                    return _KeyUsed(open_one.id, fingerprint)
                in_progress = None if open_one is None else open_one.id
            if in_progress is not None:
                raise ConflictError(
                    f"a payment of this bill is already in progress (renewal {in_progress}); "
                    "check its status before paying again",
                    code="bill_payment_in_progress",
                    params={"renewal": in_progress},
                )
            self._bills_in_batch[card.id] = checked.renewal_id
        if method.daily_max is not None:  # last: only an admitted request counts against it
            self._check_daily_limit(checked, method.code, method.name(), method.daily_max, amount)
        self._add_rows(checked, card, plan, amount, fingerprint)
        return _Admitted(checked.renewal_id, plan.code, amount, now, fingerprint)

    def _check_daily_limit(
        self,
        checked: _CheckedRequest,
        method_code: str,
        method_name: str,
        daily_max: Money,
        amount: Money,
    ) -> None:
        """A wallet account pays at most ``daily_max`` a day (operator's time zone) with this
        method; the renewals of this batch count too."""
        key = (checked.instrument_fingerprint, method_code)
        used = Money(self._wallet_totals.get(key, 0), amount.currency)
        if used + amount > daily_max:
            left = daily_max - used if used < daily_max else Money.zero(amount.currency)
            raise ConflictError(
                f"{method_name} allows {daily_max} a day; {left} is left today. Pay a smaller "
                "amount, use another method, or try again tomorrow.",
                code="ewallet_daily_limit_reached",
                field="payment.method",
                params={"method": method_name, "limit": str(daily_max), "left": str(left)},
            )
        self._wallet_totals[key] = (used + amount).minor

    def _add_rows(
        self, checked: _CheckedRequest, card: Card, plan: Plan, amount: Money, fingerprint: str
    ) -> None:
        now, request = self.now, checked.request
        self.renewals.append(
            RenewalRecord(
                id=checked.renewal_id,
                card_id=card.id,
                plan_code=plan.code,
                kind=plan.kind,
                channel=request.channel,
                amount=amount,
                data_quota_mb=plan.data_quota_mb,
                validity_days=plan.validity_days,
                status=RenewalStatus.PENDING_PAYMENT,
                idempotency_key=checked.key,
                request_fingerprint=fingerprint,
                decline_code=None,
                created_at=now,
                updated_at=now,
                paid_at=None,
                completed_at=None,
                expected_by=None,
                contact_after=None,
                receipt_number=_receipt_number(checked.renewal_id),
                receipt_email=request.receipt_email,
                receipt_language=request.receipt_language,
            )
        )
        self.events.append(
            (
                checked.renewal_id,
                Transition(
                    None,
                    RenewalStatus.PENDING_PAYMENT,
                    now,
                    f"renewal of {plan.code} requested through {request.channel}",
                ),
            )
        )
        self._add_payment(checked, amount)

    def _add_payment(self, checked: _CheckedRequest, amount: Money) -> None:
        now, services, payment_token = self.now, self.services, checked.payment_token
        self.payments.append(
            PaymentRecord(
                id=checked.payment_id,
                renewal_id=checked.renewal_id,
                gateway=checked.gateway_name,
                method=checked.request.method,
                status=PaymentStatus.NOT_SENT,
                amount=amount,
                token_encrypted=services.tokens.seal(payment_token.token),
                brand=payment_token.brand,
                funding=payment_token.funding,
                last4=payment_token.last4,
                expiry_month=payment_token.expiry_month,
                expiry_year=payment_token.expiry_year,
                issuer_country=payment_token.issuer_country,
                gateway_reference=None,
                decline_code=None,
                requested_at=now,
                check_attempts=0,
                # If we die before recording the outcome, the reconciler asks the gateway then.
                next_check_at=now
                + dt.timedelta(seconds=services.limits.payments.gateway_timeout_s * 2),
                flagged_for_staff=False,
                refund_reference=None,
                instrument_fingerprint=checked.instrument_fingerprint,
                wallet_account_fingerprint=(
                    checked.instrument_fingerprint if checked.request.wallet_account else None
                ),
                merchant_initiated=checked.request.merchant_initiated,
            )
        )


def _receipt_number(renewal_id: str) -> str:
    """60 bits drawn from the renewal's random id (so a replayed run makes the same number)."""
    digest = hashlib.sha256(b"receipt:" + renewal_id.encode()).digest()
    return receipt_number_from(int.from_bytes(digest[:8], "big") >> 4)


def amount_due(card: Card, kind: PlanKind, price: Money) -> Money:
    if kind is PlanKind.POSTPAID_BILL:
        if card.bill_due.is_zero:
            raise ConflictError("this card has no bill to pay", code="nothing_to_pay")
        return card.bill_due
    if price.currency != card.currency:
        raise ConflictError(
            "this plan is priced in another currency", code="plan_currency_mismatch"
        )
    return price
