"""Turning a card's auto-renewal on and off, and reading it back with its next charge.

``set_auto_renewal`` is what every setter calls: the subscriber's portal page (through
``set_for_account``, which checks the account owns the card) and an organisation's fleet-wide
policy (call it with ``set_by=SetBy(SetterKind.ORGANISATION, organisation_id)`` and, to pay with a
saved payment card, the id of the account whose saved card pays). It checks the card, the plan
(one the card may buy on ``channel``), the payment (a saved payment card of
``payment.account_id`` that has not expired, or the card's credit for a data pack) and the
optional top-up rule, then stores the settings; the worker takes it from there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from topup.domain.auto_renewal import (
    AutoRenewal,
    AutoRenewalAttempt,
    PaymentSource,
    SetterKind,
    TopUpRule,
    charge_time,
    payment_label,
)
from topup.domain.card_events import CardEventKind, validity_period
from topup.domain.cards import Card, CardKind, check_renewable
from topup.domain.errors import ConflictError, InputError, NotFoundError
from topup.domain.money import Money
from topup.domain.plans import Plan, PlanKind
from topup.ports import UnitOfWork
from topup.services.auto_renewal.schedule import schedule_of
from topup.services.context import Services
from topup.services.renewals.reads import card_unknown
from topup.services.saved_payment_cards import saved_payment_card_unknown

DEFAULT_CHANNEL = "web"  # the portal's: plans and methods are offered per channel
CREDIT_LABEL = "credit"  # the method's name in events when the card's credit pays
TOP_UP_THRESHOLD_MB_MAX = 10_000_000
LEFT_FLEET = "left_fleet"  # why an organisation's auto-renewal of a card stopped: it left
FIX_PATH = "/accounts/cards/{card_id}/auto-renewal"  # the one-tap fix: the card's own page


def fix_path(card_id: str) -> str:
    return FIX_PATH.format(card_id=card_id)


@dataclass(frozen=True)
class SetBy:
    kind: SetterKind
    id: str


@dataclass(frozen=True)
class PaymentChoice:
    """What pays: a saved payment card of ``account_id``, or the card's credit."""

    source: PaymentSource
    saved_payment_card_id: str | None = None
    account_id: str | None = None

    @staticmethod
    def saved_card(account_id: str, saved_payment_card_id: str) -> PaymentChoice:
        return PaymentChoice(PaymentSource.SAVED_PAYMENT_CARD, saved_payment_card_id, account_id)

    @staticmethod
    def credit() -> PaymentChoice:
        return PaymentChoice(PaymentSource.CREDIT)


@dataclass(frozen=True)
class AutoRenewalView:
    """A card's auto-renewal as its owner sees it."""

    card_id: str
    enabled: bool
    plan_code: str
    plan_names: dict[str, str]
    payment: PaymentSource
    saved_payment_card_id: str | None
    method: str  # e.g. "visa 4242", or "credit"
    amount: Money | None  # the plan's price (None: the plan is gone)
    next_charge_at: dt.datetime | None  # None: off, or the card has no validity end
    period: str
    set_by: SetterKind
    top_up: TopUpRule | None
    last_attempt: AutoRenewalAttempt | None
    problems: tuple[str, ...]  # of the latest pre-check of this period ("" if none)


def _not_prepaid() -> ConflictError:
    return ConflictError(
        "auto-renewal buys prepaid plans: this card is postpaid",
        code="auto_renewal_prepaid_only",
    )


def _plan_unknown(code: str) -> NotFoundError:
    return NotFoundError(
        f"there is no plan {code!r}", code="plan_unknown", field="plan", params={"plan": code}
    )


def _check_plan(plan: Plan | None, code: str, card: Card, channel: str, now: dt.datetime) -> Plan:
    if plan is None:
        raise _plan_unknown(code)
    plan.check_can_buy(card_kind=card.kind, channel=channel, at=now)
    if plan.kind is PlanKind.POSTPAID_BILL:
        raise _not_prepaid()
    return plan


def _check_top_up(services: Services, rule: TopUpRule, card: Card) -> None:
    cap_max = services.limits.auto_renewal.auto_top_ups_per_month_max
    if not 1 <= rule.below_mb <= TOP_UP_THRESHOLD_MB_MAX:
        raise InputError(
            f"top up when data falls below 1 to {TOP_UP_THRESHOLD_MB_MAX} MB",
            code="auto_top_up_threshold_invalid",
            field="top_up_below_mb",
            params={"maximum": str(TOP_UP_THRESHOLD_MB_MAX)},
        )
    count = rule.month_count_max
    amount = rule.month_amount_max
    if (count is not None and not 1 <= count <= cap_max) or (
        amount is not None and (amount.minor < 1 or amount.currency != card.currency)
    ):
        raise InputError(
            f"a monthly cap is 1 to {cap_max} top-ups, or a positive amount",
            code="auto_top_up_cap_invalid",
            field="top_up_cap",
            params={"maximum": str(cap_max)},
        )


async def _record_change(
    uow: UnitOfWork,
    card: Card,
    *,
    set_by: SetBy,
    kept: AutoRenewal | None,
    enabled: bool,
    plan_code: str,
    at: dt.datetime,
    reason: str = "",
) -> None:
    """A change not made by a subscriber of the card is written on its timeline: who made it,
    whose setting it replaced and, if the change has one, why (``LEFT_FLEET``)."""
    if set_by.kind is SetterKind.ACCOUNT:
        return
    name = ""
    if set_by.kind is SetterKind.ORGANISATION:
        organisation = await uow.organisations.get(set_by.id)
        name = "" if organisation is None else organisation.name
    replaced = ""
    if (
        kept is not None
        and kept.enabled
        and (kept.set_by, kept.set_by_id) != (set_by.kind, set_by.id)
    ):
        replaced = kept.set_by.value
    await uow.cards.add_event(
        card_id=card.id,
        kind=CardEventKind.AUTO_RENEWAL_SET.value,
        at=at,
        detail={
            "period": validity_period(card),
            "enabled": 1 if enabled else 0,
            "plan_code": plan_code,
            "set_by": set_by.kind.value,
            "set_by_name": name,
            "replaced": replaced,
            **({"reason": reason} if reason else {}),
        },
    )


async def set_auto_renewal(
    services: Services,
    *,
    card_id: str,
    plan_code: str,
    payment: PaymentChoice,
    set_by: SetBy,
    channel: str = DEFAULT_CHANNEL,
    top_up: TopUpRule | None = None,
) -> AutoRenewalView:
    """Turn on (or change) a card's auto-renewal. Any setter; see the module's docstring."""
    if not plan_code.strip():
        raise InputError(
            "choose a plan", code="auto_renewal_plan_missing", field="plan_code", params={}
        )
    now = services.clock.now()
    by_organisation = set_by.kind is SetterKind.ORGANISATION
    async with services.unit_of_work() as uow:
        # An organisation's: the card locked first, as taking it out of the fleet does, so a
        # card taken out meanwhile is not left renewing at the organisation's cost.
        card = await uow.cards.get(card_id, for_update=by_organisation)
        if card is None:
            raise card_unknown()
        if card.kind is not CardKind.PREPAID:
            raise _not_prepaid()
        # Grace ended: no renewal can reach it, so no charge is scheduled (card_expired).
        check_renewable(card, now, services.profile.grace_period_days)
        plan = _check_plan(await uow.plans.get(plan_code), plan_code, card, channel, now)
        if payment.source is PaymentSource.CREDIT:
            if plan.kind is not PlanKind.PREPAID_PACK:
                raise ConflictError(
                    "a card's credit pays data packs only, not a credit reload",
                    code="auto_renewal_credit_pays_packs_only",
                    field="payment",
                    params={"plan": plan.code},
                )
        else:
            saved = None
            if payment.account_id is not None and payment.saved_payment_card_id is not None:
                saved = await uow.saved_payment_cards.get(
                    payment.account_id, payment.saved_payment_card_id
                )
            if saved is None:
                raise saved_payment_card_unknown()
            today = now.astimezone(ZoneInfo(services.profile.time_zone)).date()
            if saved.expired(today.year, today.month):
                raise InputError(
                    "The card has expired: check the expiry date or use another card.",
                    code="payment_card_expired",
                    field="saved_payment_card",
                    params={"expiry": f"{saved.expiry_month:02d}/{saved.expiry_year % 100:02d}"},
                )
        if top_up is not None:
            _check_plan(await uow.plans.get(top_up.plan_code), top_up.plan_code, card, channel, now)
            _check_top_up(services, top_up, card)
        if by_organisation:  # checked with the card locked
            owners = await uow.organisations.owners_of_cards([card_id])
            if owners.get(card_id) != set_by.id:
                raise NotFoundError(
                    "this card is not in the organisation's fleet",
                    code="card_not_in_organisation",
                    field="card",
                    params={},
                )
        kept = await uow.auto_renewals.get(card_id, for_update=True)
        setting = AutoRenewal(
            card_id=card_id,
            enabled=True,
            plan_code=plan.code,
            payment=payment.source,
            saved_payment_card_id=(
                payment.saved_payment_card_id
                if payment.source is PaymentSource.SAVED_PAYMENT_CARD
                else None
            ),
            payment_account_id=(
                payment.account_id if payment.source is PaymentSource.SAVED_PAYMENT_CARD else None
            ),
            set_by=set_by.kind,
            set_by_id=set_by.id,
            channel=channel,
            top_up=top_up,
            top_up_armed=True if kept is None else kept.top_up_armed,
            top_ups=0 if kept is None else kept.top_ups,
            next_check_at=now,  # the worker looks at once, then at the times it works out
            created_at=now if kept is None else kept.created_at,
            updated_at=now,
        )
        await uow.auto_renewals.put(setting)
        await _record_change(
            uow, card, set_by=set_by, kept=kept, enabled=True, plan_code=plan.code, at=now
        )
        await uow.commit()
    return await auto_renewal_of(services, card_id)  # type: ignore[return-value]


async def turn_off(services: Services, *, card_id: str, set_by: SetBy) -> None:
    """Turn a card's auto-renewal (and auto top-up) off; a charge already sent still resolves."""
    async with services.unit_of_work() as uow:
        if await switch_off(uow, card_id, set_by=set_by, at=services.clock.now()):
            await uow.commit()


async def switch_off(
    uow: UnitOfWork,
    card_id: str,
    *,
    set_by: SetBy,
    at: dt.datetime,
    only_if_set_by: SetBy | None = None,
    reason: str = "",
) -> bool:
    """``turn_off`` in the caller's unit of work (which commits): False if there was nothing to
    turn off, or, with ``only_if_set_by``, if someone else set it (it is theirs: left on)."""
    kept = await uow.auto_renewals.get(card_id, for_update=True)
    card = await uow.cards.get(card_id)
    if kept is None or not kept.enabled or card is None:
        return False
    if only_if_set_by is not None and (kept.set_by, kept.set_by_id) != (
        only_if_set_by.kind,
        only_if_set_by.id,
    ):
        return False
    await uow.auto_renewals.put(
        replace(
            kept,
            enabled=False,
            next_check_at=None,
            set_by=set_by.kind,
            set_by_id=set_by.id,
            updated_at=at,
        )
    )
    await _record_change(
        uow,
        card,
        set_by=set_by,
        kept=kept,
        enabled=False,
        plan_code=kept.plan_code,
        at=at,
        reason=reason,
    )
    return True


async def _owned(
    uow: UnitOfWork, account_id: str, card_id: str, *, turning_off: bool = False
) -> None:
    """The account has linked the card, and no organisation manages the card's auto-renewal;
    ``turning_off`` one the account pays (``_accounts_money``) is the account's even then."""
    if not await uow.accounts.owns_card(account_id, card_id):
        raise card_unknown()
    name = await _managing_organisation(uow, card_id)
    if name is None:
        return
    if turning_off and _accounts_money(await uow.auto_renewals.get(card_id), account_id):
        return
    raise ConflictError(
        "an organisation's card: its auto-renewal is the organisation's to change",
        code="auto_renewal_managed_by_organisation",
        params={"organisation": name},
    )


def _accounts_money(setting: AutoRenewal | None, account_id: str) -> bool:
    """The setting charges the account's saved payment card, or the account set it (the card's
    credit): a card that joined a fleet since must not leave its subscriber unable to stop it."""
    if setting is None:
        return False
    if setting.payment is PaymentSource.SAVED_PAYMENT_CARD:
        return setting.payment_account_id == account_id
    return setting.set_by is SetterKind.ACCOUNT and setting.set_by_id == account_id


async def turn_off_allowed(services: Services, account_id: str, card_id: str) -> bool:
    """Whether the account may turn the card's auto-renewal off (``turn_off_for_account``)."""
    async with services.unit_of_work() as uow:
        try:
            await _owned(uow, account_id, card_id, turning_off=True)
        except ConflictError:
            return False
    return True


async def _managing_organisation(uow: UnitOfWork, card_id: str) -> str | None:
    organisation_id = (await uow.organisations.owners_of_cards([card_id])).get(card_id)
    if organisation_id is None:
        return None
    organisation = await uow.organisations.get(organisation_id)
    return "" if organisation is None else organisation.name


async def managed_by(services: Services, account_id: str, card_id: str) -> str | None:
    """The name of the organisation whose card this is (it alone changes the card's
    auto-renewal), or None: the account's own to change."""
    async with services.unit_of_work() as uow:
        if not await uow.accounts.owns_card(account_id, card_id):
            raise card_unknown()
        return await _managing_organisation(uow, card_id)


async def set_for_account(
    services: Services,
    account_id: str,
    *,
    card_id: str,
    plan_code: str,
    saved_payment_card_id: str | None,
    top_up: TopUpRule | None = None,
    channel: str = DEFAULT_CHANNEL,
) -> AutoRenewalView:
    """The subscriber's own: a card linked to the account, paid by one of its saved payment
    cards (``saved_payment_card_id``) or, when None, by the card's credit."""
    async with services.unit_of_work() as uow:
        await _owned(uow, account_id, card_id)
    payment = (
        PaymentChoice.credit()
        if saved_payment_card_id is None
        else PaymentChoice.saved_card(account_id, saved_payment_card_id)
    )
    return await set_auto_renewal(
        services,
        card_id=card_id,
        plan_code=plan_code,
        payment=payment,
        set_by=SetBy(SetterKind.ACCOUNT, account_id),
        channel=channel,
        top_up=top_up,
    )


def _payer_not_linked() -> InputError:
    return InputError(
        "the saved payment card's account has not linked this card",
        code="auto_renewal_payer_not_linked",
        field="payment",
        params={},
    )


async def set_by_operator(
    services: Services,
    operator_id: str,
    *,
    card_id: str,
    plan_code: str,
    payment: PaymentChoice,
    top_up: TopUpRule | None = None,
) -> AutoRenewalView:
    """The operator's (``topup auto-renew``): a saved payment card pays only a card its account
    has linked, or a card of an organisation the account is a member of; a card's credit pays
    for itself."""
    if payment.source is PaymentSource.SAVED_PAYMENT_CARD:
        payer = payment.account_id or ""
        async with services.unit_of_work() as uow:
            if not await uow.accounts.owns_card(payer, card_id):
                organisation_id = (await uow.organisations.owners_of_cards([card_id])).get(card_id)
                if (
                    organisation_id is None
                    or await uow.organisations.member(organisation_id, payer) is None
                ):
                    raise _payer_not_linked()
    return await set_auto_renewal(
        services,
        card_id=card_id,
        plan_code=plan_code,
        payment=payment,
        set_by=SetBy(SetterKind.OPERATOR, operator_id),
        top_up=top_up,
    )


async def turn_off_for_account(services: Services, account_id: str, *, card_id: str) -> None:
    """The subscriber's own, or one an organisation manages that the account pays for."""
    async with services.unit_of_work() as uow:
        await _owned(uow, account_id, card_id, turning_off=True)
    await turn_off(services, card_id=card_id, set_by=SetBy(SetterKind.ACCOUNT, account_id))


async def method_label(uow: UnitOfWork, setting: AutoRenewal) -> str:
    """The payment as events and pages name it: ``visa 4242``, or ``credit``."""
    if setting.payment is PaymentSource.CREDIT:
        return CREDIT_LABEL
    if setting.payment_account_id is None or setting.saved_payment_card_id is None:
        return ""
    saved = await uow.saved_payment_cards.get(
        setting.payment_account_id, setting.saved_payment_card_id
    )
    return "" if saved is None else payment_label(saved.brand, saved.last4)


async def auto_renewal_of(services: Services, card_id: str) -> AutoRenewalView | None:
    """A card's auto-renewal with its next charge (date, amount, method); None if never set."""
    schedule = schedule_of(services)
    async with services.unit_of_work() as uow:
        setting = await uow.auto_renewals.get(card_id)
        card = await uow.cards.get(card_id)
        if setting is None or card is None:
            return None
        plan = await uow.plans.get(setting.plan_code)
        method = await method_label(uow, setting)
        period = validity_period(card)
        attempt = await uow.auto_renewals.attempt(card_id, period)
        problems: tuple[str, ...] = ()
        done = sorted(await uow.auto_renewals.prechecks_done(card_id, period))
        if done:
            problems = await _precheck_problems(uow, card_id, period, done[0])
    next_charge_at = None
    if setting.enabled and card.validity_end is not None:
        next_charge_at = charge_time(card.validity_end, schedule)
    return AutoRenewalView(
        card_id=card_id,
        enabled=setting.enabled,
        plan_code=setting.plan_code,
        plan_names={} if plan is None else dict(plan.names),
        payment=setting.payment,
        saved_payment_card_id=setting.saved_payment_card_id,
        method=method,
        amount=None if plan is None else plan.price,
        next_charge_at=next_charge_at,
        period=period,
        set_by=setting.set_by,
        top_up=setting.top_up,
        last_attempt=attempt,
        problems=problems,
    )


async def _precheck_problems(
    uow: UnitOfWork, card_id: str, period: str, offset_s: int
) -> tuple[str, ...]:
    text = await uow.auto_renewals.precheck_problems(card_id, period, offset_s)
    return tuple(code for code in text.split(",") if code)


@dataclass(frozen=True)
class UpcomingAutoRenewal:
    """An auto-renewal coming (for the "auto-renewal coming" reminder): when, how much, how."""

    card_id: str
    msisdn: str
    period: str
    charge_at: dt.datetime
    plan_code: str
    amount: Money | None
    method: str
    fix_path: str


async def upcoming_auto_renewals(
    services: Services,
    *,
    due_before: dt.datetime,
    limit: int,
    after: tuple[dt.datetime, str] | None = None,
) -> list[UpcomingAutoRenewal]:
    """Enabled auto-renewals whose charge falls before ``due_before``, soonest first, a page of
    at most ``limit`` (the next page: ``after`` = (the last one's validity end, card id)).
    Already charged periods are left out."""
    schedule = schedule_of(services)
    limit = max(1, min(limit, services.limits.auto_renewal.auto_renewal_batch_size))
    validity_before = due_before + dt.timedelta(seconds=schedule.lead_s)
    found: list[UpcomingAutoRenewal] = []
    async with services.unit_of_work() as uow:
        pairs = await uow.auto_renewals.upcoming(
            validity_before=validity_before, limit=limit, after=after
        )
        plans = await uow.plans.get_many(sorted({setting.plan_code for setting, _ in pairs}))
        for setting, card in pairs:
            if card.validity_end is None:
                continue
            period = validity_period(card)
            attempt = await uow.auto_renewals.attempt(card.id, period)
            if attempt is not None and attempt.status.value in ("paid", "succeeded", "gave_up"):
                continue  # charged (paid, applied) or given up
            plan = plans.get(setting.plan_code)
            found.append(
                UpcomingAutoRenewal(
                    card_id=card.id,
                    msisdn=card.msisdn,
                    period=period,
                    charge_at=charge_time(card.validity_end, schedule),
                    plan_code=setting.plan_code,
                    amount=None if plan is None else plan.price,
                    method=await method_label(uow, setting),
                    fix_path=fix_path(card.id),
                )
            )
    return found
