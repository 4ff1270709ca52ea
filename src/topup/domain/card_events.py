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
    # Every auto-renewal event's detail: period, plan_code, amount_minor, currency, method (e.g.
    # "visa 4242", or "credit"), charge_at (ISO) and fix_path (the portal page of the fix).
    # PROBLEM: a pre-check before the charge found ``problem`` (payment_card_expired,
    #   payment_token_revoked, payment_card_removed, amount_above_method_limit,
    #   amount_below_method_limit, plan_withdrawn, credit_too_low); before_charge_s says which
    #   pre-check (one event per problem, per card, period and pre-check).
    # ATTEMPT: a try of the period's charge starts (attempt = its number; merchant_initiated).
    # SUCCEEDED: the period's renewal was applied: the card is renewed (renewal_id); written
    #   only then, never for a try that is paid but still activating.
    # RETRYING: a try failed and another will be made (problem, decline_code, attempt, final 0,
    #   next_try_at). FAILED: the final failure of the period, written once (problem,
    #   decline_code, attempt, final 1, grace_until). A try paid then refunded instead of applied
    #   is a failed try too (refunded 1, renewal_id; problem activation_failed, renewal_refunded
    #   or card_not_renewable: final, fix_path /help; activation_timed_out: tried again). After
    #   FAILED: no more tries, the card goes into grace as
    #   usual. Reminders: send "auto-renewal failed, here is the fix" for FAILED only (its
    #   detail's final is always 1; a reader may check final == 1). RETRYING is on the timeline;
    #   a "the charge failed, we will try again at next_try_at" reminder, if wanted, is made from
    #   the period's first RETRYING (attempt 1) only: once per (card, period, kind) holds.
    # AUTO_TOP_UP: outcome bought | capped | failed | pending, crossing, data_quota_mb, below_mb.
    # COMING: a pre-check passed (3 and 1 days before the charge): the charge to come, with the
    #   fields above (one reminder per period tells of it). The charges coming are also listed by
    #   ``services.auto_renewal.upcoming_auto_renewals(services, due_before=, limit=, after=)``.
    AUTO_RENEWAL_COMING = "auto_renewal_coming"
    AUTO_RENEWAL_PROBLEM = "auto_renewal_problem"
    AUTO_RENEWAL_ATTEMPT = "auto_renewal_attempt"
    AUTO_RENEWAL_SUCCEEDED = "auto_renewal_succeeded"
    AUTO_RENEWAL_RETRYING = "auto_renewal_retrying"
    AUTO_RENEWAL_FAILED = "auto_renewal_failed"
    AUTO_TOP_UP = "auto_top_up"
    # SET: auto-renewal turned on, changed or off by someone other than a subscriber of the card
    # (an organisation's fleet policy, an operator); detail: period, enabled (1 or 0),
    # plan_code, set_by (organisation | operator), set_by_name (the organisation's name, else
    # ""), replaced (the setter kind of the setting it replaced, e.g. "account", else "").
    AUTO_RENEWAL_SET = "auto_renewal_set"


def validity_period(card: Card) -> str:
    """The period a card is in, as a stable text: a prepaid card's validity end, a postpaid
    card's bill due date (UTC, ISO 8601). Renewing a card starts a new period."""
    when = card.validity_end if card.kind is CardKind.PREPAID else card.bill_due_date
    if when is None:
        return NO_PERIOD
    return when.isoformat(timespec="seconds")
