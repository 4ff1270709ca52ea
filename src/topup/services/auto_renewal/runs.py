"""The worker's auto-renewal pass: pre-checks before the charge, the charge (tries with backoff
while validity lasts), and auto top-ups.

Cards are found by the index on (enabled, next_check_at) and leased in bounded batches (another
worker skips a leased card: FOR UPDATE SKIP LOCKED, then the lease). Whatever a worker does twice
is harmless: a pre-check is recorded once per (card, period, offset) and only the transaction that
records it writes its events; a period's charge is one ``auto_renewal_attempts`` row (primary key
card and period) whose each try is a renewal with its own unique idempotency key
``auto:<card>:<period>:<try>``; a new try starts only after the last one was declined (no money
taken). A try whose outcome is unknown (a crash after the charge was sent, a timeout) is resolved
by the payment checks asking the gateway, and this pass reads the renewal's outcome by its key:
it never sends a second charge for it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

from topup.domain.auto_renewal import (
    AttemptStatus,
    AutoRenewal,
    AutoRenewalAttempt,
    PaymentSource,
    Problem,
    Schedule,
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
from topup.domain.renewal import RenewalStatus
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.ports import UnitOfWork
from topup.services.auto_renewal.credit import pay_with_credit
from topup.services.auto_renewal.schedule import schedule_of
from topup.services.auto_renewal.settings import fix_path, method_label
from topup.services.context import Services
from topup.services.renewals import RenewalRequest, renew
from topup.services.saved_payment_cards import method_for

PAID = (RenewalStatus.ACTIVATING, RenewalStatus.COMPLETED)
UNPAID_CLOSED = (RenewalStatus.DECLINED, RenewalStatus.CANCELLED, RenewalStatus.REFUNDED)
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
    limits = services.limits.auto_renewal
    async with services.unit_of_work() as uow:
        card = await uow.cards.get(setting.card_id)
    if card is None or card.kind is not CardKind.PREPAID:
        await _schedule(services, setting.card_id, None)
        return
    if card.validity_end is None or card.status is CardStatus.EXPIRED:
        # Nothing to renew (never renewed, or expired for good): look again in a while.
        await _schedule(services, setting.card_id, _later(now, limits.auto_renewal_precheck_late_s))
        return
    await _schedule(services, setting.card_id, await _renewal_step(services, setting, card, now))


def _later(now: dt.datetime, seconds: int) -> dt.datetime:
    return now + dt.timedelta(seconds=seconds)


async def _schedule(services: Services, card_id: str, at: dt.datetime | None) -> None:
    async with services.unit_of_work() as uow:
        await uow.auto_renewals.schedule(card_id, next_check_at=at)
        await uow.commit()


async def _renewal_step(
    services: Services, setting: AutoRenewal, card: Card, now: dt.datetime
) -> dt.datetime:
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
    if attempt is not None and attempt.status in (AttemptStatus.SUCCEEDED, AttemptStatus.GAVE_UP):
        # Paid (its activation extends validity: a new period) or given up (grace as usual; a
        # renewal through any channel starts a new period): look again later.
        return _later(
            now,
            limits.auto_renewal_recheck_s
            if attempt.status is AttemptStatus.SUCCEEDED
            else limits.auto_renewal_precheck_late_s,
        )
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
) -> dt.datetime:
    limits = services.limits.auto_renewal
    recheck = _later(now, limits.auto_renewal_recheck_s)
    if attempt is not None and attempt.status is AttemptStatus.CHARGING:
        return await _resume(services, setting, card, period, charge_at, attempt)
    if attempt is not None and attempt.next_try_at is not None and now < attempt.next_try_at:
        return attempt.next_try_at
    if card.validity_end is not None and now >= card.validity_end:
        # The window closed before a try could be made (the worker was down): say so once.
        await _give_up(services, setting, card, period, charge_at, attempt, "window_ended")
        return _later(now, limits.auto_renewal_precheck_late_s)
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
            )
            if not await uow.auto_renewals.add_attempt(started):
                return None
        elif current.status is AttemptStatus.RETRY and (
            seen is None or current.tries == seen.tries
        ):
            started = replace(
                current,
                status=AttemptStatus.CHARGING,
                tries=current.tries + 1,
                try_key=try_key(card.id, period, current.tries + 1),
                renewal_id=None,
                next_try_at=None,
                updated_at=now,
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


async def _try(
    services: Services,
    setting: AutoRenewal,
    card: Card,
    period: str,
    charge_at: dt.datetime,
    attempt: AutoRenewalAttempt,
) -> dt.datetime:
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
) -> dt.datetime:
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
) -> dt.datetime:
    now = services.clock.now()
    limits = services.limits.auto_renewal
    if renewal.status in PAID:
        async with services.unit_of_work() as uow:
            current = await uow.auto_renewals.attempt(card.id, period, for_update=True)
            if current is None or current.status is not AttemptStatus.CHARGING:
                return _later(now, limits.auto_renewal_recheck_s)
            await uow.auto_renewals.update_attempt(
                replace(
                    current, status=AttemptStatus.SUCCEEDED, renewal_id=renewal.id, updated_at=now
                )
            )
            await uow.cards.add_event(
                card_id=card.id,
                kind=CardEventKind.AUTO_RENEWAL_SUCCEEDED.value,
                at=now,
                detail=_detail(
                    period,
                    setting,
                    await method_label(uow, setting),
                    renewal.amount,
                    charge_at,
                    attempt=current.tries,
                    renewal_id=renewal.id,
                ),
            )
            await uow.commit()
        return _later(now, limits.auto_renewal_recheck_s)
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
    # Pending, unknown or waiting: the payment checks ask the gateway; look again soon.
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(card.id, period, for_update=True)
        if current is not None and current.renewal_id != renewal.id:
            await uow.auto_renewals.update_attempt(
                replace(current, renewal_id=renewal.id, updated_at=now)
            )
            await uow.commit()
    return _later(now, limits.auto_renewal_recheck_s)


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
) -> dt.datetime:
    """A try ended with nothing taken: try again later inside the window, or give up."""
    now = services.clock.now()
    schedule: Schedule = schedule_of(services)
    validity_end = card.validity_end or now
    if decline_code in ("payment_token_revoked",):
        problem = Problem.PAYMENT_TOKEN_REVOKED
    elif decline_code in ("expired_card",):
        problem = Problem.PAYMENT_CARD_EXPIRED
    retry_at = next_try_at(now, attempt.tries, validity_end, schedule)
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.attempt(card.id, period, for_update=True)
        if (
            current is None
            or current.status is not AttemptStatus.CHARGING
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
    return _later(now, services.limits.auto_renewal.auto_renewal_precheck_late_s)


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
