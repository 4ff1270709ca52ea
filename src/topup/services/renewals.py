"""Renew a card: validate, record, charge (with no transaction open), then record the outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from topup.domain import ledger
from topup.domain.card_number import CardNumber, CardNumberKind, parse_card_number
from topup.domain.cards import Card, check_renewable
from topup.domain.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    TopupError,
)
from topup.domain.methods import MethodKind, wallet_account_of
from topup.domain.money import Money
from topup.domain.payment_card import (
    CardDetailsInvalid,
    CardFacts,
    CardFunding,
    check_card_details,
    check_international,
    check_method_matches,
    normalize_card_number,
)
from topup.domain.plans import CHANNELS, Plan, PlanKind
from topup.domain.receipts import receipt_number_from
from topup.domain.records import JobKind, JobSubject, PaymentRecord, RenewalMove, RenewalRecord
from topup.domain.renewal import (
    RenewalStatus,
    Transition,
    backoff_s,
    estimate_activation,
)
from topup.ports import (
    CardDetails,
    ChargeRequest,
    ChargeResult,
    GatewayOutcome,
    PaymentGateway,
    PaymentInstrument,
    UnitOfWork,
)
from topup.services.batching import Batcher
from topup.services.context import Services
from topup.services.fingerprints import instrument_fingerprint
from topup.services.views import RenewalView
from topup.settings import Limits

IDEMPOTENCY_KEY_LENGTH_MAX = 255


@dataclass(frozen=True)
class RenewalRequest:
    card_number: str
    plan_code: str
    payment: CardDetails | None  # card methods; None for e-wallets
    channel: str = "web"
    idempotency_key: str | None = None
    method: str = "credit_card"
    region: str | None = None  # where the kiosk or store stands; None on the web, app and API
    wallet_account: str | None = None  # e-wallets: the phone number registered with the wallet
    # Cards paid through the API: the token the payer's device got from the gateway (the card's
    # number never reaches topup); instead of ``payment``.
    payment_token: str | None = None
    receipt_email: str | None = None  # e-mail the receipt here once paid
    receipt_language: str | None = None


async def find_card(uow: UnitOfWork, services: Services, text: str) -> Card:
    number = parse_card_number(text, services.profile)
    if number.kind is CardNumberKind.MSISDN:
        card: Card | None = await uow.cards.by_number(msisdn=number.value)
    else:
        card = await uow.cards.by_number(iccid=number.value)
    if card is None:
        raise _card_unknown()
    return card


def instrument_locked(until: dt.datetime, now: dt.datetime) -> ConflictError:
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return ConflictError(
        f"This card is locked for {minutes} more minutes after too many wrong payment "
        "passwords. Try again later or pay another way.",
        code="payment_method_locked",
        retryable=True,
        field="payment",
        params={"minutes": str(minutes)},
    )


def renewal_unknown(renewal_id: str) -> NotFoundError:
    return NotFoundError(
        f"no renewal {renewal_id}",
        code="renewal_unknown",
        field="renewal_id",
        params={"renewal": renewal_id},
    )


async def renewal_with_payment(
    uow: UnitOfWork, renewal_id: str
) -> tuple[RenewalRecord, PaymentRecord]:
    """A renewal and its payment, read (not locked); NotFoundError if there is none."""
    found: dict[str, tuple[RenewalRecord, PaymentRecord, str]] = await uow.renewals.with_payments(
        [renewal_id]
    )
    if renewal_id not in found:
        raise renewal_unknown(renewal_id)
    renewal, payment, _ = found[renewal_id]
    return renewal, payment


def _card_unknown() -> NotFoundError:
    return NotFoundError(
        "no card with this number is registered with us; check the number on your receipt "
        "or SIM carrier",
        code="card_unknown",
        field="card_number",
    )


def _fingerprint(request: RenewalRequest, card_id: str, brand: str, last4: str, expiry: str) -> str:
    parts = [card_id, request.plan_code, request.channel, request.method, brand, last4, expiry]
    if request.region is not None:  # (renewals made before regions existed keep their prints)
        parts.append(request.region)
    material = json.dumps(parts)
    return hashlib.sha256(material.encode()).hexdigest()


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise InputError(
            f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}",
            code="channel_unknown",
            field="channel",
            params={"channel": channel, "channels": ", ".join(CHANNELS)},
        )


def _check_request(request: RenewalRequest) -> str:
    check_channel(request.channel)
    key = request.idempotency_key
    if key is None:
        return ""
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InputError(
            f"an idempotency key is 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
            code="idempotency_key_invalid",
            field="idempotency_key",
            params={"length_max": str(IDEMPOTENCY_KEY_LENGTH_MAX)},
        )
    return key


@dataclass(frozen=True)
class _Order:
    """A renewal asked for, checked as far as can be done without the database."""

    request: RenewalRequest
    key: str
    number: CardNumber
    instrument: PaymentInstrument
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
    key = _check_request(request) or f"auto-{services.new_id()}"
    renewal_id = services.new_id()
    payment_id = services.new_id()
    gateway, instrument = await _instrument(services, request)
    number = parse_card_number(request.card_number, services.profile)
    fingerprint = instrument_fingerprint(services, gateway.name, instrument)
    order = _Order(
        request, key, number, instrument, fingerprint, renewal_id, payment_id, gateway.name
    )
    admission = await _intake(services).submit(order)
    if isinstance(admission, _KeyUsed):
        async with services.unit_of_work() as uow:
            if admission.renewal_id is None:
                return await _replay_after_race(uow, key, admission.fingerprint)
            return await _replay(uow, admission.renewal_id, admission.fingerprint)
    charge = ChargeRequest(
        payment_id=payment_id,
        token=instrument.token,
        amount=admission.amount,
        description=f"renewal {renewal_id} plan {admission.plan_code}",
        requested_at=admission.requested_at,
    )
    result = await send_charge(gateway, services.limits, charge)
    return await record_charge_result(services, renewal_id, result)


async def _instrument(
    services: Services, request: RenewalRequest
) -> tuple[PaymentGateway, PaymentInstrument]:
    """The gateway that will take this payment and the token it gave for the payer's card or
    wallet account. The method is judged first, before its details; its amount limits are
    checked at admission (see ``choose``)."""
    method = services.methods.judge(request.method, channel=request.channel, region=request.region)
    if method is not None and method.kind is MethodKind.EWALLET:
        account = wallet_account_of(method, request.wallet_account, services.profile)
        gateway = services.gateway_named(method.gateway)
        return gateway, gateway.tokenize_account(method.code.removeprefix("ewallet:"), account)
    if request.payment_token is not None and request.payment is None:
        gateway = services.gateway
        if method is not None and method.gateway:
            gateway = services.gateway_named(method.gateway)
        instrument = await gateway.instrument_of(request.payment_token)
        try:
            funding = CardFunding(instrument.funding)
        except ValueError:
            funding = CardFunding.UNKNOWN
        check_method_matches(request.method, CardFacts(funding=funding))
        return gateway, instrument
    if request.payment is None:
        raise InputError(
            "Enter the payment card's number, expiry and security code.",
            code="payment_card_required",
            field="payment",
        )
    _check_payment_card(services, request, request.payment)
    gateway = services.gateway
    if method is not None and method.gateway:
        gateway = services.gateway_named(method.gateway)
    card = request.payment
    clean = replace(card, number=normalize_card_number(card.number))  # as it was checked
    return gateway, await gateway.tokenize(clean)


def _check_payment_card(services: Services, request: RenewalRequest, card: CardDetails) -> None:
    """Before the gateway sees anything: every card field, the card's funding against the
    method chosen, and whether its issuer allows a payment from this country (R7b, R7c)."""
    facts = services.card_facts(normalize_card_number(card.number))
    today = services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)).date()
    try:
        check_card_details(
            card, today=today, holder_name_required=False, holder_name=None, facts=facts
        )
    except CardDetailsInvalid as error:
        if len(error.problems) == 1:  # one bad field: its own code says it best
            raise error.problems[0] from None
        raise
    check_method_matches(request.method, facts)
    check_international(facts, services.profile.country)


def _intake(services: Services) -> Batcher[_Order, _Admitted | _KeyUsed]:
    return services.batcher("renewal_intake", _admit_all, key=lambda order: order.key)


async def _admit_all(
    services: Services, orders: list[_Order]
) -> list[_Admitted | _KeyUsed | Exception]:
    """Admit a batch of orders in one transaction: each one's card and plan are checked, and the
    accepted renewals and their payments are written with a few set-based statements.

    A key used before is found by the insert itself (the unique key leaves that row out), so the
    usual case costs no look-up; the caller then replays what the key first made. An order
    refused here is looked up by key too: a retry of a request that went through is answered
    with its renewal, even if the card or plan has changed since."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        intake = _Intake(services, uow, now)
        await intake.load(orders)
        outcomes: list[_Admitted | _KeyUsed | Exception] = []
        for order in orders:
            try:
                outcomes.append(await intake.admit(order))
            except TopupError as error:
                outcomes.append(error)
        refused = [
            order.key
            for order, outcome in zip(orders, outcomes, strict=True)
            if isinstance(outcome, TopupError) and order.key in intake.fingerprints
        ]
        known = await uow.renewals.by_idempotency_keys(refused)
        # In key order: two batches inserting the same keys wait for each other, never deadlock.
        rows = sorted(intake.renewal_rows, key=lambda row: str(row["idempotency_key"]))
        inserted = await uow.renewals.add_many(rows)
        for index, (order, outcome) in enumerate(zip(orders, outcomes, strict=True)):
            if order.key in known:
                outcomes[index] = _KeyUsed(known[order.key].id, intake.fingerprints[order.key])
            elif isinstance(outcome, _Admitted) and outcome.renewal_id not in inserted:
                # The key was used before, or by another transaction just now.
                outcomes[index] = _KeyUsed(None, outcome.fingerprint)
        await uow.renewals.add_events(
            [(renewal_id, change) for renewal_id, change in intake.events if renewal_id in inserted]
        )
        await uow.payments.add_many(
            [row for row in intake.payment_rows if row["renewal_id"] in inserted]
        )
        await uow.commit()
    return outcomes


class _Intake:
    """What one intake transaction knows: the cards, plans and keys its orders name."""

    def __init__(self, services: Services, uow: UnitOfWork, now: dt.datetime) -> None:
        self.services = services
        self.uow = uow
        self.now = now
        self.renewal_rows: list[dict[str, Any]] = []
        self.payment_rows: list[dict[str, Any]] = []
        self.events: list[tuple[str, Transition]] = []
        self._cards: dict[tuple[CardNumberKind, str], Card] = {}
        self._plans: dict[str, Plan] = {}
        self.fingerprints: dict[str, str] = {}  # by idempotency key, for orders whose card is known
        self._locked: dict[str, Card] = {}
        self._locked_instruments: dict[str, dt.datetime] = {}
        # What each wallet account has paid or has waiting today, per method (daily limits).
        self._wallet_totals: dict[tuple[str, str], int] = {}
        self._bills_in_batch: dict[str, str] = {}

    async def load(self, orders: list[_Order]) -> None:
        uow = self.uow
        numbers = [order.number for order in orders]
        cards: list[Card] = await uow.cards.by_numbers(
            msisdns=[n.value for n in numbers if n.kind is CardNumberKind.MSISDN],
            iccids=[n.value for n in numbers if n.kind is CardNumberKind.ICCID],
        )
        for card in cards:
            self._cards[(CardNumberKind.MSISDN, card.msisdn)] = card
            self._cards[(CardNumberKind.ICCID, card.iccid)] = card
        self._plans = await uow.plans.get_many([order.request.plan_code for order in orders])
        self._locked_instruments = await uow.instruments.locked(
            [order.instrument_fingerprint for order in orders], now=self.now
        )
        zone = ZoneInfo(self.services.profile.time_zone)
        start_of_day = self.now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        wallet_accounts = [o.instrument_fingerprint for o in orders if o.request.wallet_account]
        await uow.payments.lock_wallet_accounts(wallet_accounts)  # daily limits, one at a time
        self._wallet_totals = await uow.payments.wallet_totals_since(
            wallet_accounts, since=start_of_day
        )
        # Payments of one bill take turns on the card's row lock: without it, concurrent callers
        # all find no payment in progress and the bill is charged several times. Locked in id
        # order, all at once, so that two batches cannot deadlock.
        bill_cards = []
        for order in orders:
            found = self._cards.get((order.number.kind, order.number.value))
            plan = self._plans.get(order.request.plan_code)
            if found is not None and plan is not None and plan.kind is PlanKind.POSTPAID_BILL:
                bill_cards.append(found.id)
        self._locked = await uow.cards.get_many(bill_cards, for_update=True)

    async def admit(self, order: _Order) -> _Admitted | _KeyUsed:
        request, now, services = order.request, self.now, self.services
        card = self._cards.get((order.number.kind, order.number.value))
        if card is None:
            raise _card_unknown()
        instrument = order.instrument
        expiry = f"{instrument.expiry_month:02d}/{instrument.expiry_year}"
        fingerprint = _fingerprint(request, card.id, instrument.brand, instrument.last4, expiry)
        self.fingerprints[order.key] = fingerprint
        plan = self._plans.get(request.plan_code)
        if plan is None:
            raise NotFoundError(
                f"there is no plan {request.plan_code!r}",
                code="plan_unknown",
                field="plan",
                params={"plan": request.plan_code},
            )
        plan.check_can_buy(card_kind=card.kind, channel=request.channel, at=now)
        locked_until = self._locked_instruments.get(order.instrument_fingerprint)
        if locked_until is not None:
            raise instrument_locked(locked_until, now)
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
                if open_one is not None and open_one.idempotency_key == order.key:
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
            self._bills_in_batch[card.id] = order.renewal_id
        if method.daily_max is not None:  # last: only an admitted order counts against it
            self._check_daily_limit(order, method.code, method.name(), method.daily_max, amount)
        self._add_rows(order, card, plan, amount, fingerprint)
        return _Admitted(order.renewal_id, plan.code, amount, now, fingerprint)

    def _check_daily_limit(
        self, order: _Order, method_code: str, method_name: str, daily_max: Money, amount: Money
    ) -> None:
        """A wallet account pays at most ``daily_max`` a day (operator's time zone) with this
        method; the renewals of this batch count too."""
        key = (order.instrument_fingerprint, method_code)
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
        self, order: _Order, card: Card, plan: Plan, amount: Money, fingerprint: str
    ) -> None:
        now, services, request, instrument = (
            self.now,
            self.services,
            order.request,
            order.instrument,
        )
        self.renewal_rows.append(
            {
                "id": order.renewal_id,
                "card_id": card.id,
                "plan_code": plan.code,
                "kind": plan.kind.value,
                "channel": request.channel,
                "amount_minor": amount.minor,
                "currency": amount.currency,
                "data_quota_mb": plan.data_quota_mb,
                "validity_days": plan.validity_days,
                "status": RenewalStatus.PENDING_PAYMENT.value,
                "idempotency_key": order.key,
                "request_fingerprint": fingerprint,
                "receipt_email": request.receipt_email,
                "receipt_language": request.receipt_language,
                "receipt_number": _receipt_number(order.renewal_id),
                "created_at": now,
                "updated_at": now,
            }
        )
        self.events.append(
            (
                order.renewal_id,
                Transition(
                    None,
                    RenewalStatus.PENDING_PAYMENT,
                    now,
                    f"renewal of {plan.code} requested through {request.channel}",
                ),
            )
        )
        self.payment_rows.append(
            {
                "id": order.payment_id,
                "renewal_id": order.renewal_id,
                "gateway": order.gateway_name,
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
                "instrument_fingerprint": order.instrument_fingerprint,
                "wallet_account_fingerprint": (
                    order.instrument_fingerprint if order.request.wallet_account else None
                ),
                "requested_at": now,
                "check_attempts": 0,
                # If we die before recording the outcome, the reconciler asks the gateway then.
                "next_check_at": now + dt.timedelta(seconds=services.limits.gateway_timeout_s * 2),
                "flagged_for_staff": False,
                "created_at": now,
                "updated_at": now,
            }
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


def charge_of(services: Services, payment: PaymentRecord) -> ChargeRequest:
    """The charge a stored payment stands for, to ask its gateway about it again (its token
    unsealed in memory only)."""
    return ChargeRequest(
        payment_id=payment.id,
        token=services.tokens.open(payment.token_encrypted),
        amount=payment.amount,
        description=f"renewal {payment.renewal_id}",
        requested_at=payment.requested_at,
    )


async def send_charge(
    gateway: PaymentGateway, limits: Limits, charge: ChargeRequest
) -> ChargeResult:
    """Call the gateway with a deadline. Whatever goes wrong in transit means 'unknown'."""
    try:
        async with asyncio.timeout(limits.gateway_timeout_s):
            return await gateway.charge(charge)
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
    renewal already moved on and changes nothing. Concurrent calls share one transaction."""
    return await _recorder(services).submit((renewal_id, result))


def _recorder(services: Services) -> Batcher[tuple[str, ChargeResult], RenewalView]:
    # One renewal at most once per batch: its second result waits for the next one.
    return services.batcher("charge_results", _record_all, key=lambda item: item[0])


@dataclass
class _Writes:
    """What recording a batch of payment outcomes changes, written set-based at the end."""

    payments: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    moves: list[RenewalMove] = field(default_factory=list)
    entries: list[ledger.Entry] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)  # paid renewals whose receipt is e-mailed

    async def apply(self, uow: UnitOfWork, at: dt.datetime) -> None:
        await uow.ledger.record_many(self.entries, at=at)
        await uow.payments.update_many(self.payments)
        await uow.renewals.move_many(self.moves, at=at)
        for kind, renewal_ids in (
            (JobKind.ACTIVATE, self.activations),
            (JobKind.RECEIPT, self.receipts),
        ):
            subjects = [JobSubject.renewal(renewal_id) for renewal_id in renewal_ids]
            await uow.jobs.enqueue_many(kind=kind, subjects=subjects, at=at)


async def _record_all(
    services: Services, items: list[tuple[str, ChargeResult]]
) -> list[RenewalView | Exception]:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        renewal_ids = [renewal_id for renewal_id, _ in items]
        found: dict[
            str, tuple[RenewalRecord, PaymentRecord, str]
        ] = await uow.renewals.with_payments(renewal_ids, for_update=True)
        writes = _Writes()
        late: list[str] = []
        for renewal_id, result in items:
            if renewal_id in found:
                renewal, payment, _ = found[renewal_id]
                if renewal.status in OPEN_RENEWAL_STATUSES:
                    _Outcome(services, writes, renewal, payment, result, now).decide()
                elif _taken_after_close(renewal, payment, result):
                    # The payer approved after we gave up (a wallet, a late bank): the money is
                    # taken but the renewal is closed. Staff refund it; it is never left unseen.
                    writes.payments.append(
                        (
                            payment.id,
                            {
                                "status": "late_success",
                                "gateway_reference": result.gateway_reference,
                                "flagged_for_staff": True,
                                "updated_at": now,
                            },
                        )
                    )
                    late.append(renewal_id)
        await writes.apply(uow, now)
        timelines: dict[str, list[Transition]] = await uow.renewals.timelines(renewal_ids)
        await uow.commit()
    for renewal_id in late:
        services.on_event("payment_taken_after_close", {"renewal_id": renewal_id})
    renewals = {renewal_id: renewal for renewal_id, (renewal, _, _) in found.items()}
    payments = {renewal_id: payment for renewal_id, (_, payment, _) in found.items()}
    for move in writes.moves:  # what the rows now hold, without reading them back
        renewals[move.renewal.id] = replace(
            move.renewal, status=move.to_status, updated_at=now, **move.values
        )
    renewal_of_payment = {payment.id: renewal_id for renewal_id, payment in payments.items()}
    for payment_id, values in writes.payments:
        payment = payments[renewal_of_payment[payment_id]]
        changed = {key: value for key, value in values.items() if key != "updated_at"}
        payments[payment.renewal_id] = replace(payment, **changed)
    return [
        RenewalView(
            renewals[renewal_id],
            payments[renewal_id],
            timelines.get(renewal_id, []),
            found[renewal_id][2],
        )
        if renewal_id in found
        else renewal_unknown(renewal_id)
        for renewal_id, _ in items
    ]


def _taken_after_close(
    renewal: RenewalRecord, payment: PaymentRecord, result: ChargeResult
) -> bool:
    return (
        result.outcome is GatewayOutcome.SUCCEEDED
        and renewal.status in (RenewalStatus.DECLINED, RenewalStatus.CANCELLED)
        and payment.status != "late_success"
    )


OPEN_RENEWAL_STATUSES = (
    RenewalStatus.PENDING_PAYMENT,
    RenewalStatus.REQUIRES_ACTION,
    RenewalStatus.PAYMENT_PENDING,
)


@dataclass(frozen=True)
class _Outcome:
    """One payment outcome being recorded: the renewal and payment it is about, what the
    gateway said, and where its writes go."""

    services: Services
    writes: _Writes
    renewal: RenewalRecord
    payment: PaymentRecord
    result: ChargeResult
    now: dt.datetime

    def decide(self) -> None:
        limits = self.services.limits
        outcome = self.result.outcome
        age_s = (self.now - self.renewal.created_at).total_seconds()
        if outcome is GatewayOutcome.SUCCEEDED:
            self.capture()
        elif outcome is GatewayOutcome.DECLINED:
            self.close_unpaid(
                RenewalStatus.DECLINED,
                f"payment declined: {self.result.decline_code}",
                self.result.decline_code,
            )
        elif self.result.requires_action and age_s > limits.requires_action_timeout_s:
            # The payer never completed the step: abandoned before payment, nothing was taken.
            self.close_unpaid(
                RenewalStatus.CANCELLED,
                f"the payer did not {self.result.requires_action} in time",
                None,
            )
        elif self.result.requires_action:
            self.await_payer()
        elif (
            outcome is GatewayOutcome.NOT_SENT
            and self.payment.check_attempts >= limits.charge_send_attempts_max
        ):
            self.close_unpaid(
                RenewalStatus.DECLINED,
                "the payment gateway could not be reached; nothing was charged",
                "gateway_unreachable",
            )
        else:  # PENDING, UNKNOWN, or NOT_SENT with attempts left: ask (or send) again later
            self.check_later()

    def close_unpaid(self, status: RenewalStatus, reason: str, decline_code: str | None) -> None:
        """End a renewal on which no money was taken: declined or cancelled."""
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": "declined" if status is RenewalStatus.DECLINED else "cancelled",
                    "decline_code": decline_code,
                    "next_check_at": None,
                    "updated_at": self.now,
                },
            )
        )
        self.writes.moves.append(
            RenewalMove(self.renewal, status, reason, {"decline_code": decline_code})
        )

    def await_payer(self) -> None:
        """The payer must act: a payment password / 3-D Secure code (we are told the answer), or an
        approval in a wallet app (the provider tells us; we also ask it, with backoff, in case its
        webhook is lost). Past the time allowed, the renewal is cancelled."""
        limits = self.services.limits
        give_up_at = self.renewal.created_at + dt.timedelta(
            seconds=limits.requires_action_timeout_s + 1
        )
        next_check_at = give_up_at
        if self.result.action_url is not None:
            delay_s = backoff_s(
                attempt=self.payment.check_attempts + 1,
                base_s=limits.payment_check_base_s,
                cap_s=limits.payment_check_cap_s,
                jitter_fraction=self.services.random.random(),
            )
            next_check_at = min(give_up_at, self.now + dt.timedelta(seconds=delay_s))
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": "requires_action",
                    "gateway_reference": self.result.gateway_reference,
                    "action_url": self.result.action_url,
                    "next_check_at": next_check_at,
                    "updated_at": self.now,
                },
            )
        )
        if self.renewal.status is not RenewalStatus.REQUIRES_ACTION:
            self.writes.moves.append(
                RenewalMove(
                    self.renewal,
                    RenewalStatus.REQUIRES_ACTION,
                    f"the payer must {self.result.requires_action}",
                )
            )

    def check_later(self) -> None:
        """Outcome not known yet: schedule the next question to the gateway, with backoff."""
        limits = self.services.limits
        delay_s = self.result.retry_after_s or backoff_s(
            attempt=self.payment.check_attempts + 1,
            base_s=limits.payment_check_base_s,
            cap_s=limits.payment_check_cap_s,
            jitter_fraction=self.services.random.random(),
        )
        outcome = self.result.outcome
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": "not_sent" if outcome is GatewayOutcome.NOT_SENT else outcome.value,
                    "gateway_reference": self.result.gateway_reference,
                    "next_check_at": self.now + dt.timedelta(seconds=delay_s),
                    "updated_at": self.now,
                },
            )
        )
        if (
            outcome is not GatewayOutcome.NOT_SENT
            and self.renewal.status is not RenewalStatus.PAYMENT_PENDING
        ):
            self.writes.moves.append(
                RenewalMove(
                    self.renewal,
                    RenewalStatus.PAYMENT_PENDING,
                    f"payment outcome not yet known ({outcome.value})",
                )
            )

    def capture(self) -> None:
        """Money taken: the capture entry, the renewal's move to activating and the activation job
        are written in one transaction (the transactional outbox)."""
        self.writes.entries.append(
            ledger.capture(
                renewal_id=self.renewal.id,
                card_id=self.renewal.card_id,
                gateway=self.payment.gateway,
                amount=self.renewal.amount,
            )
        )
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": "succeeded",
                    "gateway_reference": self.result.gateway_reference,
                    "next_check_at": None,
                    "updated_at": self.now,
                },
            )
        )
        estimate = estimate_activation(
            paid_at=self.now,
            typical_delay_s=self.services.limits.activation_typical_delay_s,
            late_after_s=self.services.limits.activation_late_after_s,
        )
        self.writes.moves.append(
            RenewalMove(
                self.renewal,
                RenewalStatus.ACTIVATING,
                f"payment captured ({self.result.gateway_reference or 'no reference'})",
                {
                    "paid_at": self.now,
                    "expected_by": estimate.expected_by,
                    "contact_after": estimate.contact_after,
                },
            )
        )
        self.writes.activations.append(self.renewal.id)
        if self.renewal.receipt_email:
            self.writes.receipts.append(self.renewal.id)


async def _views(uow: UnitOfWork, renewal_ids: list[str]) -> dict[str, RenewalView]:
    found: dict[str, tuple[RenewalRecord, str, str]] = await uow.renewals.with_card_numbers(
        renewal_ids
    )
    payments: dict[str, PaymentRecord] = await uow.payments.for_renewals(renewal_ids)
    timelines: dict[str, list[Transition]] = await uow.renewals.timelines(renewal_ids)
    return {
        renewal_id: RenewalView(
            renewal, payments.get(renewal_id), timelines.get(renewal_id, []), msisdn
        )
        for renewal_id, (renewal, msisdn, _iccid) in found.items()
    }


async def _view(uow: UnitOfWork, renewal_id: str) -> RenewalView:
    view = (await _views(uow, [renewal_id])).get(renewal_id)
    if view is None:
        raise renewal_unknown(renewal_id)
    return view


async def get_renewal(services: Services, renewal_id: str) -> RenewalView:
    async with services.unit_of_work() as uow:
        return await _view(uow, renewal_id)
