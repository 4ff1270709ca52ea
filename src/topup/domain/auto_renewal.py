"""Auto-renewal and auto top-up: the rules, pure (no clock, no I/O).

A card's auto-renewal buys one plan each validity period, a little before validity ends (the
*charge time*: validity end minus the lead time), paid by a saved payment card (a PSP token,
charged merchant-initiated: nobody is there to type a CVC or pass 3-D Secure) or by the card's own
prepaid credit. Before the charge, pre-checks at configured offsets (e.g. 3 days and 1 day) name
what would make it fail (``Problem``), each with its one-tap fix in the portal. A declined charge
is tried again with backoff while validity lasts; after the last try the card goes into grace as
any card does. One period is charged at most once: the attempt of a (card, period) is one row.

Auto top-up: when the card's data quota falls below a threshold, buy a top-up plan, at most a
number of times or an amount a month; once per crossing of the threshold (it re-arms when the
quota is back at or above it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.money import Money

TRY_KEY_PREFIX = "auto:"  # renewals.idempotency_key of a try: auto:<card>:<period>:<try>
TOP_UP_KEY_PREFIX = "autotopup:"  # autotopup:<card>:<crossing>


class PaymentSource(StrEnum):
    SAVED_PAYMENT_CARD = "saved_payment_card"
    CREDIT = "credit"  # the card's prepaid credit pays the plan


class SetterKind(StrEnum):
    """Who turned auto-renewal on: a subscriber's account, or an organisation's fleet policy."""

    ACCOUNT = "account"
    ORGANISATION = "organisation"
    OPERATOR = "operator"  # from the command line (`topup auto-renew`)


class Problem(StrEnum):
    """Why an auto-renewal would fail or failed: a stable code, each with one fix."""

    PAYMENT_CARD_EXPIRED = "payment_card_expired"  # by its expiry month vs the charge date
    PAYMENT_TOKEN_REVOKED = "payment_token_revoked"  # noqa: S105 -- a code: the PSP refuses it
    PAYMENT_CARD_REMOVED = "payment_card_removed"  # the saved payment card was deleted
    AMOUNT_ABOVE_METHOD_LIMIT = "amount_above_method_limit"
    AMOUNT_BELOW_METHOD_LIMIT = "amount_below_method_limit"
    PLAN_WITHDRAWN = "plan_withdrawn"  # inactive, or no longer sold by the charge time
    CREDIT_TOO_LOW = "credit_too_low"  # paying by credit: less credit than the price
    CHARGE_DECLINED = "charge_declined"  # the PSP declined (detail: decline_code)
    CARD_NOT_RENEWABLE = "card_not_renewable"  # e.g. the card expired meanwhile
    # Paid, then refunded instead of applied (the money went back):
    ACTIVATION_FAILED = "activation_failed"  # the network refused the card for good: final
    ACTIVATION_TIMED_OUT = "activation_timed_out"  # the network did not apply it in time: retried
    RENEWAL_REFUNDED = "renewal_refunded"  # customer service refunded it before activation: final


class AttemptStatus(StrEnum):
    CHARGING = "charging"  # a try is under way (its renewal's key is ``try_key``)
    PAID = "paid"  # the try's renewal is paid and activating: not renewed yet
    RETRY = "retry"  # the last try failed (nothing taken, or refunded); the next at next_try_at
    SUCCEEDED = "succeeded"  # the try's renewal was applied: the card is renewed
    GAVE_UP = "gave_up"  # the last try failed: the card goes into grace as usual

    @property
    def is_settled(self) -> bool:
        """The period's attempt is over: the pass has nothing more to do for it."""
        return self in (AttemptStatus.SUCCEEDED, AttemptStatus.GAVE_UP)


# An attempt whose try may still hold money or still be applied: the pass follows its renewal.
OPEN_ATTEMPT_STATUSES = (AttemptStatus.CHARGING, AttemptStatus.PAID)


@dataclass(frozen=True, slots=True)
class TopUpRule:
    """Buy ``plan_code`` when data falls below ``below_mb``; at most ``month_count_max`` times
    and ``month_amount_max`` a calendar month (operator's time zone); None: no such cap."""

    plan_code: str
    below_mb: int
    month_count_max: int | None
    month_amount_max: Money | None


@dataclass(frozen=True, slots=True)
class AutoRenewal:
    """A card's auto-renewal settings (one row per card)."""

    card_id: str
    enabled: bool
    plan_code: str
    payment: PaymentSource
    saved_payment_card_id: str | None  # with SAVED_PAYMENT_CARD
    payment_account_id: str | None  # the account whose saved payment card pays
    set_by: SetterKind
    set_by_id: str  # the account's or organisation's id
    channel: str  # the channel whose plans and methods it buys with (e.g. web)
    top_up: TopUpRule | None
    top_up_armed: bool  # the quota was at or above the threshold since the last top-up
    top_ups: int  # how many top-ups were ever started (the next crossing's number)
    next_check_at: dt.datetime | None  # when the worker looks at the card next
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class AutoRenewalAttempt:
    """The charge of one (card, period): its tries, and how it ended."""

    card_id: str
    period: str
    status: AttemptStatus
    tries: int
    try_key: str  # the idempotency key of the current (last) try's renewal
    renewal_id: str | None
    next_try_at: dt.datetime | None
    problem: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    # The organisation whose payment card the current try charges (its fleet policy's setting,
    # or its payment card chosen for its card), as it was when the try started: the try's
    # renewal is on that organisation's invoice. None: the subscriber pays.
    paid_by_organisation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When things happen around a period, from the limits."""

    lead_s: int  # charge this long before validity ends
    precheck_offsets_s: tuple[int, ...]  # pre-checks this long before the charge, descending
    tries_max: int
    retry_base_s: int
    retry_cap_s: int


def charge_time(validity_end: dt.datetime, schedule: Schedule) -> dt.datetime:
    return validity_end - dt.timedelta(seconds=schedule.lead_s)


def try_key(card_id: str, period: str, number: int) -> str:
    return f"{TRY_KEY_PREFIX}{card_id}:{period}:{number}"


def top_up_key(card_id: str, crossing: int) -> str:
    return f"{TOP_UP_KEY_PREFIX}{card_id}:{crossing}"


def due_precheck(
    now: dt.datetime, charge_at: dt.datetime, schedule: Schedule, done: frozenset[int]
) -> int | None:
    """The pre-check (its offset in seconds) to run now: the latest one whose time has come,
    before the charge, not done yet (earlier missed ones are skipped: one warning is enough)."""
    if now >= charge_at:
        return None
    due = [
        offset
        for offset in schedule.precheck_offsets_s
        if now >= charge_at - dt.timedelta(seconds=offset)
    ]
    if not due:
        return None
    latest = min(due)
    return None if latest in done else latest


def retry_delay_s(tries: int, schedule: Schedule) -> int:
    """Exponential backoff after the ``tries``-th failed try."""
    return int(min(schedule.retry_cap_s, schedule.retry_base_s * 2 ** max(0, tries - 1)))


def next_try_at(
    now: dt.datetime, tries: int, validity_end: dt.datetime, schedule: Schedule
) -> dt.datetime | None:
    """When to try again after ``tries`` failed tries; None when it is the last (the tries are
    spent or the next would fall after validity ends)."""
    if tries >= schedule.tries_max:
        return None
    at = now + dt.timedelta(seconds=retry_delay_s(tries, schedule))
    return at if at < validity_end else None


def next_wake(
    now: dt.datetime, charge_at: dt.datetime, schedule: Schedule, done: frozenset[int]
) -> dt.datetime:
    """The worker's next look at a card before its charge: the next pre-check, else the charge."""
    later = [
        charge_at - dt.timedelta(seconds=offset)
        for offset in schedule.precheck_offsets_s
        if offset not in done and charge_at - dt.timedelta(seconds=offset) > now
    ]
    return min([*later, charge_at])


def expired_by(expiry_month: int, expiry_year: int, at_year: int, at_month: int) -> bool:
    """A payment card is good to the end of its expiry month."""
    return (expiry_year, expiry_month) < (at_year, at_month)


def method_limit_problem(amount: Money, minimum: Money, maximum: Money) -> Problem | None:
    if amount > maximum:
        return Problem.AMOUNT_ABOVE_METHOD_LIMIT
    if amount < minimum:
        return Problem.AMOUNT_BELOW_METHOD_LIMIT
    return None


def month_start(local: dt.datetime) -> dt.datetime:
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def top_up_allowed(
    rule: TopUpRule, *, count_this_month: int, spent_this_month: Money, price: Money
) -> bool:
    """Whether one more top-up at ``price`` stays within the month's caps."""
    if rule.month_count_max is not None and count_this_month >= rule.month_count_max:
        return False
    return not (
        rule.month_amount_max is not None and spent_this_month + price > rule.month_amount_max
    )


def payment_label(brand: str, last4: str) -> str:
    """How a payment card is named in events and reminders, e.g. ``visa 4242``."""
    return f"{brand} {last4}"


class TopUpStatus(StrEnum):
    STARTED = "started"  # its renewal is under way (counts against the month's caps)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # nothing paid: does not count
    CAPPED = "capped"  # the month's cap was reached: not bought (does not count)


COUNTED_TOP_UP_STATUSES = (TopUpStatus.STARTED, TopUpStatus.SUCCEEDED)


@dataclass(frozen=True, slots=True)
class AutoTopUp:
    """One crossing of a card's top-up threshold, and what became of it."""

    card_id: str
    crossing: int
    renewal_key: str
    plan_code: str
    amount: Money
    status: TopUpStatus
    renewal_id: str | None
    at: dt.datetime
    paid_by_organisation_id: str | None = None  # the organisation charged (its invoices)
