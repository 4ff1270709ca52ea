"""The worker's auto-renewal pass: pre-checks before the charge, the charge (tries with backoff
while validity lasts), and auto top-ups.

Cards are found by the index on (enabled, next_check_at) and leased in bounded batches (another
worker skips a leased card: FOR UPDATE SKIP LOCKED, then the lease). Whatever a worker does twice
is harmless: a pre-check is recorded once per (card, period, offset) and only the transaction that
records it writes its events; a period's charge is one ``auto_renewal_attempts`` row (primary key
card and period) whose each try is a renewal with its own unique idempotency key
``auto:<card>:<period>:<try>``; a new try starts only after the last one's money went back or
was never taken (declined, or paid then refunded), checked under the attempt row's lock. A try
whose outcome is unknown (a crash after the charge was sent, a timeout) is resolved by the
payment checks asking the gateway, and this pass reads the renewal's outcome by its key: it never
sends a second charge for it.

A paid try is "paid" (activating) until its renewal is applied: only then is the period
``succeeded`` (the card is renewed) and ``auto_renewal_succeeded`` written. A paid try refunded
instead (the network refused or did not apply it, or staff refunded it) is a failed try: tried
again with backoff when the problem may pass (the network did not apply it in time), else the
period's final failure (``auto_renewal_failed``). A settled period is not looked at again: the
next look is the next period's (a renewal applied to the card wakes the pass).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

from topup.domain.auto_renewal import (
    OPEN_ATTEMPT_STATUSES,
    AttemptStatus,
    AutoRenewal,
    AutoRenewalAttempt,
    PaymentSource,
    Problem,
    Schedule,
    SetterKind,
    charge_time,
    due_precheck,
    expired_by,
    method_limit_problem,
    next_try_at,
    next_wake,
    try_key,
)
from topup.domain.card_events import CardEventKind, validity_period
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import TopupError
from topup.domain.money import Money
from topup.domain.plans import Plan
from topup.domain.records import RenewalRecord
from topup.domain.renewal import RefundCause, RenewalStatus, refund_cause
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.ports import UnitOfWork
from topup.services.auto_renewal.credit import pay_with_credit
from topup.services.auto_renewal.schedule import schedule_of
from topup.services.auto_renewal.settings import fix_path, method_label
from topup.services.context import Services
from topup.services.renewals import RenewalRequest, renew
from topup.services.saved_payment_cards import method_for

# A try's renewal that holds no money: never taken (declined, cancelled) or given back.
UNPAID_CLOSED = (RenewalStatus.DECLINED, RenewalStatus.CANCELLED, RenewalStatus.REFUNDED)
# Where the subscriber is sent when only customer service can help (the portal's help page).
HELP_PATH = "/help"
# A paid try refunded instead of applied, by the refund's cause: the problem it names, and
# whether a later try may go through (the network did not apply it in time) or not.
PROBLEM_OF_REFUND: dict[RefundCause | None, tuple[Problem, bool]] = {
    RefundCause.ACTIVATION_TIMED_OUT: (Problem.ACTIVATION_TIMED_OUT, True),
    RefundCause.ACTIVATION_FAILED: (Problem.ACTIVATION_FAILED, False),
    RefundCause.CARD_REFUSED: (Problem.CARD_NOT_RENEWABLE, False),
    RefundCause.STAFF_REQUEST: (Problem.RENEWAL_REFUNDED, False),
    None: (Problem.ACTIVATION_FAILED, False),  # a reason made otherwise: not tried again
}
# Problems only customer service can fix: their fix is the help page (how to contact it).
HELP_PROBLEMS = frozenset(
    {Problem.ACTIVATION_FAILED, Problem.RENEWAL_REFUNDED, Problem.CARD_NOT_RENEWABLE}
)
# A refusal's code (from renew) as the problem it names.
PROBLEM_OF_CODE: dict[str, Problem] = {
    "payment_token_revoked": Problem.PAYMENT_TOKEN_REVOKED,
    "payment_token_invalid": Problem.PAYMENT_TOKEN_REVOKED,
    "payment_card_expired": Problem.PAYMENT_CARD_EXPIRED,
    "expired_card": Problem.PAYMENT_CARD_EXPIRED,
    "amount_above_method_maximum": Problem.AMOUNT_ABOVE_METHOD_LIMIT,
    "amount_below_method_minimum": Problem.AMOUNT_BELOW_METHOD_LIMIT,
    "plan_not_on_sale": Problem.PLAN_WITHDRAWN,
    "plan_unknown": Problem.PLAN_WITHDRAWN,
    "plan_not_on_channel": Problem.PLAN_WITHDRAWN,
    "credit_too_low": Problem.CREDIT_TOO_LOW,
    "saved_payment_card_unknown": Problem.PAYMENT_CARD_REMOVED,
    "card_expired": Problem.CARD_NOT_RENEWABLE,
}


async def run_auto_renewals(services: Services) -> int:
    """Lease a batch of cards whose auto-renewal needs a look, and look at each. Returns how
    many were looked at."""
    now = services.clock.now()
    limits = services.limits.auto_renewal
    async with services.unit_of_work() as uow:
        leased = await uow.auto_renewals.lease_due(
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.auto_renewal_lease_s),
            limit=limits.auto_renewal_batch_size,
        )
        await uow.commit()
    for setting in leased:
        await _look_at(services, setting)
    return len(leased)


async def _look_at(services: Services, setting: AutoRenewal) -> None:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        card = await uow.cards.get(setting.card_id)
    if card is None or card.kind is not CardKind.PREPAID:
        await _schedule(services, setting.card_id, None)
        return
    # Tries of earlier periods still open (paid when the card was renewed another way, or cut
    # short): settled by their renewals' outcomes, never charged again.
    following = await _follow_earlier_tries(services, setting, card)
    if card.validity_end is None or card.status is CardStatus.EXPIRED:
        # Nothing to renew (never renewed, or expired for good): a renewal applied to the card
        # wakes the pass (``auto_renewals.wake``).
        await _schedule(services, setting.card_id, following)
        return
    period = validity_period(card)
    at = await _renewal_step(services, setting, card, now)
    async with services.unit_of_work() as uow:
        renewed = await uow.cards.get(setting.card_id)
    if renewed is not None and validity_period(renewed) != period:
        # This look's try renewed the card: the new period's first look (its pre-check).
        at = await _renewal_step(services, setting, renewed, services.clock.now())
    await _schedule(services, setting.card_id, _sooner(at, following))


def _later(now: dt.datetime, seconds: int) -> dt.datetime:
    return now + dt.timedelta(seconds=seconds)


def _sooner(first: dt.datetime | None, second: dt.datetime | None) -> dt.datetime | None:
    if first is None or second is None:
        return first or second
    return min(first, second)


def _settled_next_look(services: Services, card: Card, now: dt.datetime) -> dt.datetime | None:
    """The period's attempt is settled and the card was not renewed: nothing to do until a
    renewal through any channel starts a new period (it wakes the pass). In case none does, one
    look when grace ends (the card has expired by then: no more looks)."""
    if card.validity_end is None:
        return None
    grace_end = card.validity_end + dt.timedelta(days=services.profile.grace_period_days)
    return grace_end if grace_end > now else None


async def _follow_earlier_tries(
    services: Services, setting: AutoRenewal, card: Card
) -> dt.datetime | None:
    """Settle the card's open tries of periods other than its current one: applied (the card
    renewed by it: succeeded), or given up quietly (the card was renewed another way, so the
    period needs no more tries); one still activating is followed. When to look again."""
    now = services.clock.now()
    period = validity_period(card)
    async with services.unit_of_work() as uow:
        earlier = [a for a in await uow.auto_renewals.open_attempts(card.id) if a.period != period]
        renewals = await uow.renewals.by_idempotency_keys([a.try_key for a in earlier])
    again: dt.datetime | None = None
    for attempt in earlier:
        renewal = renewals.get(attempt.try_key)
        if renewal is not None and renewal.status is RenewalStatus.COMPLETED:
            charge_at = charge_time(
                dt.datetime.fromisoformat(attempt.period), schedule_of(services)
            )
            await _succeeded(services, setting, attempt, charge_at, renewal)
        elif renewal is not None and not renewal.status.is_terminal:
            await _follow_paid(services, attempt, renewal)
            again = _sooner(again, _later(now, services.limits.auto_renewal.auto_renewal_recheck_s))
        else:
            await _end_quietly(services, attempt, renewal)
    return again


async def _end_quietly(
    services: Services, attempt: AutoRenewalAttempt, renewal: RenewalRecord | None
) -> None:
    """An earlier period's try that did not renew the card (never made, declined or refunded)
    after the card was renewed another way: no retry and no failure to tell (the card is
    renewed); the renewal's own timeline says what became of its money."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(attempt.card_id, attempt.period, for_update=True)
        if current is None or current.status not in OPEN_ATTEMPT_STATUSES:
            return
        await uow.auto_renewals.update_attempt(
            replace(
                current,
                status=AttemptStatus.GAVE_UP,
                renewal_id=None if renewal is None else renewal.id,
                next_try_at=None,
                problem=current.problem or "renewed_otherwise",
                updated_at=now,
            )
        )
        await uow.commit()


async def _schedule(services: Services, card_id: str, at: dt.datetime | None) -> None:
    async with services.unit_of_work() as uow:
        await uow.auto_renewals.schedule(card_id, next_check_at=at)
        await uow.commit()


async def _renewal_step(
    services: Services, setting: AutoRenewal, card: Card, now: dt.datetime
) -> dt.datetime | None:
    """Do what is due for the card's current period; when to look next."""
    schedule = schedule_of(services)
    limits = services.limits.auto_renewal
    validity_end = card.validity_end
    if validity_end is None:  # (checked by the caller)
        return _later(now, limits.auto_renewal_precheck_late_s)
    period = validity_period(card)
    charge_at = charge_time(validity_end, schedule)
    async with services.unit_of_work() as uow:
        attempt = await uow.auto_renewals.attempt(card.id, period)
        done = await uow.auto_renewals.prechecks_done(card.id, period)
    if attempt is not None and attempt.status.is_settled:
        # Given up (grace as usual; a renewal through any channel starts a new period and wakes
        # the pass). (A succeeded try renewed the card: its period is an earlier one.)
        return _settled_next_look(services, card, now)
    if now < charge_at:
        offset = due_precheck(now, charge_at, schedule, done)
        if offset is not None:
            await _precheck(services, setting, card, period, charge_at, offset)
            done = done | {o for o in schedule.precheck_offsets_s if o >= offset}
        return next_wake(now, charge_at, schedule, done)
    return await _charge_step(services, setting, card, period, charge_at, attempt, now)


# --- pre-checks -----------------------------------------------------------------------------


async def _problems(
    services: Services, uow: UnitOfWork, setting: AutoRenewal, card: Card, charge_at: dt.datetime
) -> tuple[list[Problem], Plan | None, SavedPaymentCard | None]:
    """What would make the charge at ``charge_at`` fail, as far as can be known now."""
    problems: list[Problem] = []
    plan = await uow.plans.get(setting.plan_code)
    if plan is None or not plan.is_on_sale(charge_at):
        problems.append(Problem.PLAN_WITHDRAWN)
    saved = None
    if setting.payment is PaymentSource.CREDIT:
        if plan is not None and card.credit < plan.price:
            problems.append(Problem.CREDIT_TOO_LOW)
        return problems, plan, None
    if setting.payment_account_id is not None and setting.saved_payment_card_id is not None:
        saved = await uow.saved_payment_cards.get(
            setting.payment_account_id, setting.saved_payment_card_id
        )
    if saved is None:
        problems.append(Problem.PAYMENT_CARD_REMOVED)
        return problems, plan, None
    local = charge_at.astimezone(ZoneInfo(services.profile.time_zone))
    if expired_by(saved.expiry_month, saved.expiry_year, local.year, local.month):
        problems.append(Problem.PAYMENT_CARD_EXPIRED)
    if plan is not None:
        method = services.methods.get(method_for(saved.funding))
        if method is not None:
            limit_problem = method_limit_problem(plan.price, method.amount_min, method.amount_max)
            if limit_problem is not None:
                problems.append(limit_problem)
    return problems, plan, saved


async def _token_revoked(services: Services, saved: SavedPaymentCard) -> bool:
    """Ask the PSP whether it still honours the saved token (it may have been revoked)."""
    gateway = services.gateway_named(saved.gateway)
    try:
        await gateway.payment_token_of(services.tokens.open(saved.token_sealed))
    except TopupError as error:
        return error.code in ("payment_token_revoked", "payment_token_invalid")
    return False


def _detail(
    period: str,
    setting: AutoRenewal,
    method: str,
    amount: Money | None,
    charge_at: dt.datetime,
    **more: str | int,
) -> dict[str, str | int]:
    detail: dict[str, str | int] = {
        "period": period,
        "plan_code": setting.plan_code,
        "amount_minor": 0 if amount is None else amount.minor,
        "currency": "" if amount is None else amount.currency,
        "method": method,
        "charge_at": charge_at.isoformat(timespec="seconds"),
        "fix_path": fix_path(setting.card_id),
    }
    detail.update(more)
    return detail


async def _precheck(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    offset_s: int,
) -> None:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        problems, plan, saved = await _problems(services, uow, setting, card, charge_at)
    if saved is not None and await _token_revoked(services, saved):
        problems.append(Problem.PAYMENT_TOKEN_REVOKED)
    async with services.unit_of_work() as uow:
        recorded = await uow.auto_renewals.add_precheck(
            card.id, period, offset_s, problems=",".join(problems), at=now
        )
        if not recorded:  # another worker did this one
            return
        method = await method_label(uow, setting)
        for problem in problems:
            await uow.cards.add_event(
                card_id=card.id,
                kind=CardEventKind.AUTO_RENEWAL_PROBLEM.value,
                at=now,
                detail=_detail(
                    period,
                    setting,
                    method,
                    None if plan is None else plan.price,
                    charge_at,
                    problem=problem.value,
                    before_charge_s=offset_s,
                ),
            )
        await uow.commit()


# --- the charge -------------------------------------------------------------------------------


async def _charge_step(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt | None,
    now: dt.datetime,
) -> dt.datetime | None:
    limits = services.limits.auto_renewal
    recheck = _later(now, limits.auto_renewal_recheck_s)
    if attempt is not None and attempt.status in OPEN_ATTEMPT_STATUSES:
        return await _resume(services, setting, card, period, charge_at, attempt)
    if attempt is not None and attempt.next_try_at is not None and now < attempt.next_try_at:
        return attempt.next_try_at
    if card.validity_end is not None and now >= card.validity_end:
        # The window closed before a try could be made (the worker was down): say so once.
        await _give_up(services, setting, card, period, charge_at, attempt, "window_ended")
        return _settled_next_look(services, card, now)
    started = await _start_try(services, setting, card, period, charge_at, attempt)
    if started is None:
        return recheck  # another worker started it
    return await _try(services, setting, card, period, charge_at, started)


async def _start_try(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    seen: AutoRenewalAttempt | None,
) -> AutoRenewalAttempt | None:
    """Claim the next try of the period (the attempt row locked): None if another worker has."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(card.id, period, for_update=True)
        paid_by = await paying_organisation(uow, setting)
        if current is None:
            started = AutoRenewalAttempt(
                card_id=card.id,
                period=period,
                status=AttemptStatus.CHARGING,
                tries=1,
                try_key=try_key(card.id, period, 1),
                renewal_id=None,
                next_try_at=None,
                problem=None,
                created_at=now,
                updated_at=now,
                paid_by_organisation_id=paid_by,
            )
            if not await uow.auto_renewals.add_attempt(started):
                return None
        elif current.status is AttemptStatus.RETRY and (
            seen is None or current.tries == seen.tries
        ):
            # Never two charges standing for one period: the last try's renewal holds no money
            # (never taken, or given back), checked under the attempt row's lock.
            last = await uow.renewals.by_idempotency_key(current.try_key)
            if last is not None and last.status not in UNPAID_CLOSED:
                return None
            started = replace(
                current,
                status=AttemptStatus.CHARGING,
                tries=current.tries + 1,
                try_key=try_key(card.id, period, current.tries + 1),
                renewal_id=None,
                next_try_at=None,
                updated_at=now,
                paid_by_organisation_id=paid_by,
            )
            await uow.auto_renewals.update_attempt(started)
        else:
            return None
        plan = await uow.plans.get(setting.plan_code)
        await uow.cards.add_event(
            card_id=card.id,
            kind=CardEventKind.AUTO_RENEWAL_ATTEMPT.value,
            at=now,
            detail=_detail(
                period,
                setting,
                await method_label(uow, setting),
                None if plan is None else plan.price,
                charge_at,
                attempt=started.tries,
                merchant_initiated=1,
            ),
        )
        await uow.commit()
    return started


async def paying_organisation(uow: UnitOfWork, setting: AutoRenewal) -> str | None:
    """The organisation a try of this setting is charged to: the one whose fleet policy set it
    (with its payment card), or the card's organisation if the setting pays with that
    organisation's payment card; None when the subscriber pays (credit, or their own card)."""
    if setting.payment is not PaymentSource.SAVED_PAYMENT_CARD:
        return None
    if setting.set_by is SetterKind.ORGANISATION:
        return setting.set_by_id
    owner = (await uow.organisations.owners_of_cards([setting.card_id])).get(setting.card_id)
    if owner is None:
        return None
    organisation = await uow.organisations.get(owner)
    if organisation is None or organisation.payment_card_id != setting.saved_payment_card_id:
        return None
    return owner


async def _try(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt,
) -> dt.datetime | None:
    """Send the try's charge (or take its credit) and record what became of it."""
    async with services.unit_of_work() as uow:
        problems, plan, saved = await _problems(services, uow, setting, card, charge_at)
    blocking = [p for p in problems if p is not Problem.AMOUNT_BELOW_METHOD_LIMIT]
    if blocking or plan is None:
        problem: Problem = blocking[0] if blocking else Problem.PLAN_WITHDRAWN
        return await _try_failed(services, setting, card, period, charge_at, attempt, problem, None)
    try:
        if setting.payment is PaymentSource.CREDIT:
            renewal = await pay_with_credit(
                services,
                card_id=card.id,
                plan_code=setting.plan_code,
                key=attempt.try_key,
                channel=setting.channel,
            )
        elif saved is None:  # (_problems said PAYMENT_CARD_REMOVED)
            return await _try_failed(
                services,
                setting,
                card,
                period,
                charge_at,
                attempt,
                Problem.PAYMENT_CARD_REMOVED,
                None,
            )
        else:
            view = await renew(
                services,
                RenewalRequest(
                    card_number=card.msisdn,
                    plan_code=setting.plan_code,
                    payment=None,
                    channel=setting.channel,
                    idempotency_key=attempt.try_key,
                    method=method_for(saved.funding),
                    payment_token=services.tokens.open(saved.token_sealed),
                    merchant_initiated=True,
                ),
            )
            renewal = view.renewal
    except TopupError as error:
        async with services.unit_of_work() as uow:
            made = await uow.renewals.by_idempotency_key(attempt.try_key)
        if made is not None:  # the try's renewal exists after all: its outcome decides
            return await _resume(services, setting, card, period, charge_at, attempt)
        refused = PROBLEM_OF_CODE.get(error.code, Problem.CHARGE_DECLINED)
        return await _try_failed(
            services, setting, card, period, charge_at, attempt, refused, error.code
        )
    return await _outcome(services, setting, card, period, charge_at, attempt, renewal)


async def _resume(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt,
) -> dt.datetime | None:
    """A try under way (or cut short by a crash): its renewal's outcome, never a new charge.
    No renewal under its key: the try never reached intake; it is made with the same key."""
    async with services.unit_of_work() as uow:
        renewal = await uow.renewals.by_idempotency_key(attempt.try_key)
    if renewal is None:
        return await _try(services, setting, card, period, charge_at, attempt)
    return await _outcome(services, setting, card, period, charge_at, attempt, renewal)


async def _outcome(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt,
    renewal: RenewalRecord,
) -> dt.datetime | None:
    """What the try's renewal became: applied (succeeded), paid and activating (followed),
    refunded or never paid (a failed try), or not known yet (the payment checks ask)."""
    now = services.clock.now()
    recheck = _later(now, services.limits.auto_renewal.auto_renewal_recheck_s)
    if renewal.status is RenewalStatus.COMPLETED:
        await _succeeded(services, setting, attempt, charge_at, renewal)
        return None  # the card is renewed: the caller looks at its new period
    if renewal.status is RenewalStatus.REFUNDED:
        problem, may_pass = await _refund_problem(services, renewal)
        return await _try_failed(
            services,
            setting,
            card,
            period,
            charge_at,
            attempt,
            problem,
            None,
            renewal=renewal,
            final=not may_pass,
        )
    if renewal.status in UNPAID_CLOSED:
        return await _try_failed(
            services,
            setting,
            card,
            period,
            charge_at,
            attempt,
            Problem.CHARGE_DECLINED,
            renewal.decline_code,
            renewal=renewal,
        )
    # Paid and activating (the network applies it, or it is refunded), or its payment pending
    # or unknown (the payment checks ask the gateway): look again soon.
    await _follow_paid(services, attempt, renewal)
    return recheck


async def _follow_paid(
    services: Services, attempt: AutoRenewalAttempt, renewal: RenewalRecord
) -> None:
    """Record the try's renewal on the attempt, and "paid" once it is paid (activating)."""
    now = services.clock.now()
    status = AttemptStatus.PAID if renewal.status is RenewalStatus.ACTIVATING else None
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(attempt.card_id, attempt.period, for_update=True)
        if (
            current is None
            or current.status not in OPEN_ATTEMPT_STATUSES
            or current.try_key != renewal.idempotency_key
            or (current.renewal_id == renewal.id and status in (None, current.status))
        ):
            return
        await uow.auto_renewals.update_attempt(
            replace(current, status=status or current.status, renewal_id=renewal.id, updated_at=now)
        )
        await uow.commit()


async def _succeeded(
    services: Services,
    setting: AutoRenewal,
    attempt: AutoRenewalAttempt,
    charge_at: dt.datetime,
    renewal: RenewalRecord,
) -> None:
    """The try's renewal was applied: the card is renewed. The period succeeded, told once."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(attempt.card_id, attempt.period, for_update=True)
        if (
            current is None
            or current.status not in OPEN_ATTEMPT_STATUSES
            or current.try_key != renewal.idempotency_key
        ):
            return
        await uow.auto_renewals.update_attempt(
            replace(
                current,
                status=AttemptStatus.SUCCEEDED,
                renewal_id=renewal.id,
                next_try_at=None,
                updated_at=now,
            )
        )
        await uow.cards.add_event(
            card_id=attempt.card_id,
            kind=CardEventKind.AUTO_RENEWAL_SUCCEEDED.value,
            at=now,
            detail=_detail(
                attempt.period,
                setting,
                await method_label(uow, setting),
                renewal.amount,
                charge_at,
                attempt=current.tries,
                renewal_id=renewal.id,
            ),
        )
        await uow.commit()


async def _refund_problem(services: Services, renewal: RenewalRecord) -> tuple[Problem, bool]:
    """Why a paid try was refunded (its timeline's refund reason), and whether it may pass."""
    async with services.unit_of_work() as uow:
        timeline = (await uow.renewals.timelines([renewal.id])).get(renewal.id, [])
    reasons = [step.reason for step in timeline if step.to_status is RenewalStatus.REFUNDED]
    cause = refund_cause(reasons[-1]) if reasons else None
    return PROBLEM_OF_REFUND.get(cause, PROBLEM_OF_REFUND[None])


async def _try_failed(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt,
    problem: Problem,
    decline_code: str | None,
    *,
    renewal: RenewalRecord | None = None,
    final: bool = False,
) -> dt.datetime | None:
    """A try ended with nothing taken, or its money given back (refunded instead of applied):
    try again later inside the window (a new try, a new key), or give up (``final``: the
    problem will not pass, e.g. the network refused the card for good)."""
    now = services.clock.now()
    schedule: Schedule = schedule_of(services)
    validity_end = card.validity_end or now
    if decline_code in ("payment_token_revoked",):
        problem = Problem.PAYMENT_TOKEN_REVOKED
    elif decline_code in ("expired_card",):
        problem = Problem.PAYMENT_CARD_EXPIRED
    retry_at = None if final else next_try_at(now, attempt.tries, validity_end, schedule)
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(card.id, period, for_update=True)
        if (
            current is None
            or current.status not in OPEN_ATTEMPT_STATUSES
            or (current.tries != attempt.tries)
        ):
            return _later(now, services.limits.auto_renewal.auto_renewal_recheck_s)
        status = AttemptStatus.RETRY if retry_at is not None else AttemptStatus.GAVE_UP
        await uow.auto_renewals.update_attempt(
            replace(
                current,
                status=status,
                renewal_id=None if renewal is None else renewal.id,
                next_try_at=retry_at,
                problem=problem.value,
                updated_at=now,
            )
        )
        plan = await uow.plans.get(setting.plan_code)
        more: dict[str, str | int] = {
            "attempt": current.tries,
            "problem": problem.value,
            "final": 0 if retry_at is not None else 1,
        }
        if decline_code:
            more["decline_code"] = decline_code
        if renewal is not None and renewal.status is RenewalStatus.REFUNDED:
            more["renewal_id"] = renewal.id
            more["refunded"] = 1  # it was paid, then the money went back
        if problem in HELP_PROBLEMS:
            more["fix_path"] = HELP_PATH
        if retry_at is not None:
            more["next_try_at"] = retry_at.isoformat(timespec="seconds")
        else:
            grace_end = validity_end + dt.timedelta(days=services.profile.grace_period_days)
            more["grace_until"] = grace_end.isoformat(timespec="seconds")
        await uow.cards.add_event(
            card_id=card.id,
            kind=(
                CardEventKind.AUTO_RENEWAL_RETRYING
                if retry_at is not None
                else CardEventKind.AUTO_RENEWAL_FAILED
            ).value,
            at=now,
            detail=_detail(
                period,
                setting,
                await method_label(uow, setting),
                None if plan is None else plan.price,
                charge_at,
                **more,
            ),
        )
        await uow.commit()
    if retry_at is not None:
        return retry_at
    return _settled_next_look(services, card, now)


async def _give_up(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt | None,
    problem: str,
) -> None:
    """No try could be made inside the window: recorded once (the attempt row), with the event."""
    now = services.clock.now()
    validity_end = card.validity_end or now
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(card.id, period, for_update=True)
        if current is None:
            ended = AutoRenewalAttempt(
                card_id=card.id,
                period=period,
                status=AttemptStatus.GAVE_UP,
                tries=0,
                try_key=try_key(card.id, period, 0),
                renewal_id=None,
                next_try_at=None,
                problem=problem,
                created_at=now,
                updated_at=now,
            )
            if not await uow.auto_renewals.add_attempt(ended):
                return
        elif current.status is AttemptStatus.RETRY:
            await uow.auto_renewals.update_attempt(
                replace(current, status=AttemptStatus.GAVE_UP, next_try_at=None, updated_at=now)
            )
            problem = current.problem or problem
        else:
            return
        plan = await uow.plans.get(setting.plan_code)
        grace_end = validity_end + dt.timedelta(days=services.profile.grace_period_days)
        await uow.cards.add_event(
            card_id=card.id,
            kind=CardEventKind.AUTO_RENEWAL_FAILED.value,
            at=now,
            detail=_detail(
                period,
                setting,
                await method_label(uow, setting),
                None if plan is None else plan.price,
                charge_at,
                attempt=0 if current is None else current.tries,
                problem=problem,
                final=1,
                grace_until=grace_end.isoformat(timespec="seconds"),
            ),
        )
        await uow.commit()
