"""What happens to a card, as the events on its timeline (``card_events``): the names every part
writes and reads, and the validity period an event belongs to.

Usage, the lifecycle, auto-renewal and bulk renewal write these events in the transaction that
does the thing; reminders are made from them (and from the card's dates), at most one per
(card, period, kind). Each event's ``detail`` carries ``period`` where the kind is about a period.
"""

from __future__ import annotations

from enum import StrEnum

from topup.domain.cards import Card, CardKind

NO_PERIOD = "none"  # a card with no validity end (never renewed) or a postpaid card with no bill


class CardEventKind(StrEnum):
    # The lifecycle (services.lifecycle): the status a card moved to, and what expiry took.
    STATUS_ACTIVE = "status_active"
    STATUS_GRACE = "status_grace"
    STATUS_EXPIRED = "status_expired"
    STATUS_SUSPENDED = "status_suspended"
    FORFEIT = "forfeit"
    BILL_ISSUED = "bill_issued"
    # A renewal applied to the card (any channel): a new validity period begins.
    RENEWED = "renewed"
    # Usage (services.usage): quota thresholds crossed; detail: period, data_quota_mb (left),
    # percent (left, a whole number); CREDIT_LOW: period, credit_minor, currency.
    DATA_LOW = "data_low"
    DATA_EXHAUSTED = "data_exhausted"
    CREDIT_LOW = "credit_low"
    # Auto-renewal (services.auto_renewal). Every AUTO_RENEWAL_* detail carries: period (the one
    # being renewed), plan_code, amount_minor, currency, method (what the payer recognises, e.g.
    # "card visa 4242" or "credit") and charge_at (ISO 8601, UTC). PROBLEM (a pre-check failed)
    # and FAILED (the final failure) add problem: one of payment_card_expired,
    # payment_token_revoked, amount_above_method_limit, plan_withdrawn, declined; each becomes
    # a reminder naming the problem and its fix (services.reminders.texts). COMING is written
    # when a pre-check passes (3 and 1 days before the charge): one reminder per period tells of
    # the charge to come. ATTEMPT is each charge attempt (the timeline only, no reminder).
    AUTO_RENEWAL_COMING = "auto_renewal_coming"
    AUTO_RENEWAL_PROBLEM = "auto_renewal_problem"
    AUTO_RENEWAL_ATTEMPT = "auto_renewal_attempt"
    AUTO_RENEWAL_SUCCEEDED = "auto_renewal_succeeded"
    AUTO_RENEWAL_FAILED = "auto_renewal_failed"
    AUTO_TOP_UP = "auto_top_up"


def validity_period(card: Card) -> str:
    """The period a card is in, as a stable text: a prepaid card's validity end, a postpaid
    card's bill due date (UTC, ISO 8601). Renewing a card starts a new period."""
    when = card.validity_end if card.kind is CardKind.PREPAID else card.bill_due_date
    if when is None:
        return NO_PERIOD
    return when.isoformat(timespec="seconds")
