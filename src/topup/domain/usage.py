"""Usage records from the network, and what they do to a card's data quota.

A usage record says that a card used some data at some time; the network's mediation system
names it by its own record id, and a record is applied once by that id whatever the number of
times it is sent. How a record counts (``counts_against_period``) and what the card's quota
becomes after a batch (``debit``) are decided here; reading files is ``topup.domain.usage_files``.

Rules:
- A record used before the card's current period began (the last renewal that extended its
  validity was applied after it was used) belongs to a period that is over: it is kept, but it
  does not debit the new period's quota.
- Records of one period are summed whatever order they arrive in; the quota never goes below
  zero.
- Only a prepaid card that is active or in grace (its status now, not the stored one, which
  the worker may not have moved yet) has a quota to debit. A postpaid card's usage is billed
  by the network's billing, not taken from a prepaid quota; a prepaid card whose grace ended
  forfeited its quota at expiry. Their records are kept, and debit nothing (``debits_quota``).
- Thresholds: ``DATA_LOW`` when what is left falls to the low share of the period's quota (the
  quota the card had when its period was first seen), ``DATA_EXHAUSTED`` when nothing is left;
  each at most once per period, and only when this debit took data the card had (a period that
  began with no data crosses nothing). A card that goes straight to exhausted raises only
  exhausted. A debited card left with nothing is barred from data whether or not it crossed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple

from topup.domain.card_events import CardEventKind
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import require

RECORD_ID_LENGTH_MAX = 64


# One record from the network, checked (``usage_files`` checks what it reads), the row stored
# as it is: (record id, card id, used at, data used in MB, counted: whether it debits the card's
# current period (see ``counted_from``), received at). A plain tuple of plain values: imports
# make millions of them, and Python's garbage collector stops looking at such a tuple once it
# has seen it (it keeps looking at a named tuple).
UsageRecord = tuple[str, str, dt.datetime, int, bool, dt.datetime]


class InsertedUsage(NamedTuple):
    """A card's records new in a batch: how many, how many of an earlier period, and the data
    the others used (what its current period is debited). (A named tuple: one per card of each
    batch.)"""

    card_id: str
    records: int
    earlier_period: int
    counted_mb: int


class RecordOutcome(StrEnum):
    DEBITED = "debited"  # counted against the card's current period
    EARLIER_PERIOD = "earlier_period"  # used before the current period began: kept, not debited
    POSTPAID = "postpaid"  # a postpaid card: billed by the network, kept, not debited
    CARD_EXPIRED = "card_expired"  # a prepaid card past its grace: kept, not debited


DEBITED_STATUSES = frozenset({CardStatus.ACTIVE, CardStatus.GRACE})


def debits_quota(card: Card, status: CardStatus) -> bool:
    """Whether usage takes data from the card's quota: a prepaid card active or in grace
    (``status`` is the one it has now, ``cards.status_at``)."""
    return card.kind is CardKind.PREPAID and status in DEBITED_STATUSES


def card_outcome(card: Card, status: CardStatus) -> RecordOutcome:
    """What becomes of a card's records whatever their time: debited (by their time, see
    ``counts_against_period``), or kept only (a postpaid card, an expired one)."""
    if card.kind is CardKind.POSTPAID:
        return RecordOutcome.POSTPAID
    return RecordOutcome.DEBITED if debits_quota(card, status) else RecordOutcome.CARD_EXPIRED


def counts_against_period(used_at: dt.datetime, period_started_at: dt.datetime | None) -> bool:
    """Whether a record used at ``used_at`` debits the period that began at
    ``period_started_at`` (None: the card was never renewed, every record counts)."""
    return period_started_at is None or used_at >= period_started_at


NEVER_COUNTED = dt.datetime.max.replace(tzinfo=dt.UTC)
ALWAYS_COUNTED = dt.datetime.min.replace(tzinfo=dt.UTC)


def counted_from(outcome: RecordOutcome, period_started_at: dt.datetime | None) -> dt.datetime:
    """The earliest use that debits a card whose records come to ``outcome``
    (``card_outcome``): a record counts if and only if it was used at or after this (one
    comparison per record of a file of millions). Never for a card usage does not debit."""
    if outcome is not RecordOutcome.DEBITED:
        return NEVER_COUNTED
    return ALWAYS_COUNTED if period_started_at is None else period_started_at


class UsageState(NamedTuple):
    """What usage remembers of a card: the period its figures are about, the quota that period
    started from (the 100 % of thresholds), what it used, and which thresholds it raised. (A
    named tuple: an import makes one per card of each batch.)"""

    card_id: str
    period: str
    period_quota_mb: int
    used_mb: int = 0
    data_low_period: str | None = None
    data_exhausted_period: str | None = None
    data_barred: bool = False  # what the network is (to be) told: no data for this card
    network_pending: bool = False  # the network has not confirmed ``data_barred`` yet


@dataclass(frozen=True, slots=True)
class NetworkChange:
    """A card whose data bar the network is to be told of, claimed by a worker."""

    state: UsageState
    msisdn: str
    iccid: str
    attempt: int

    @property
    def request_id(self) -> str:
        """The same change of the same period is the same request, however often it is sent."""
        action = "bar" if self.state.data_barred else "unbar"
        return f"data-{action}:{self.state.card_id}:{self.state.period}"


@dataclass(frozen=True, slots=True)
class ThresholdEvent:
    kind: CardEventKind
    detail: dict[str, str | int]


class Debit(NamedTuple):
    """A card after a batch of its records: its quota now, its usage state (None: a card usage
    does not debit, nothing to remember) and its events. (A named tuple: an import makes one per
    card of each batch.)"""

    before: Card
    data_quota_mb: int
    state: UsageState | None
    events: tuple[ThresholdEvent, ...]

    @property
    def card(self) -> Card:
        """The card debited (made when asked: an import only needs the quota)."""
        if self.data_quota_mb == self.before.data_quota_mb:
            return self.before
        return replace(self.before, data_quota_mb=self.data_quota_mb)


def low_threshold_mb(period_quota_mb: int, low_percent: int) -> int:
    """What left is "low": at most ``low_percent`` % of the period's quota."""
    return period_quota_mb * low_percent // 100


def debit(
    card: Card,
    state: UsageState | None,
    *,
    period: str,
    used_mb: int,
    low_percent: int,
    status: CardStatus,
) -> Debit:
    """Take ``used_mb`` (the records of the current period in this batch) from the card's
    quota, never below zero, and say which thresholds this crossed for the first time in the
    period. ``status``: the card's status now; a card usage does not debit (postpaid, expired)
    is left as it is, with no state and no event. An exhausted prepaid card is to be barred
    from data on the network."""
    require(used_mb >= 0, "a debit is not negative")
    require(0 <= low_percent <= 100, "the low share is a percentage")
    if not debits_quota(card, status):
        return Debit(card, card.data_quota_mb, state, ())
    # Built field by field rather than by dataclasses.replace: an import debits ten thousand
    # cards a batch, and replace() costs several times a constructor.
    if state is None or state.period != period:
        base = UsageState(card.id, period, card.data_quota_mb) if state is None else state
        period_quota_mb, used_before = card.data_quota_mb, 0
    else:
        base, period_quota_mb, used_before = state, state.period_quota_mb, state.used_mb
    low_period, exhausted_period = base.data_low_period, base.data_exhausted_period
    data_barred, network_pending = base.data_barred, base.network_pending
    left = max(0, card.data_quota_mb - used_mb)
    events: tuple[ThresholdEvent, ...] = ()
    # A threshold is crossed by taking data the card had, in a period that began with some.
    crossing = left < card.data_quota_mb and period_quota_mb > 0
    if crossing and left == 0 and exhausted_period != period:
        events = (_threshold(CardEventKind.DATA_EXHAUSTED, period, left, period_quota_mb, 0),)
        exhausted_period = low_period = period
    elif (
        crossing
        and 0 < left <= low_threshold_mb(period_quota_mb, low_percent)
        and low_period != period
    ):
        percent = left * 100 // period_quota_mb
        events = (_threshold(CardEventKind.DATA_LOW, period, left, period_quota_mb, percent),)
        low_period = period
    if used_mb > 0 and left == 0 and not data_barred:
        data_barred = network_pending = True
    new_state = UsageState(
        card.id,
        period,
        period_quota_mb,
        used_before + used_mb,
        low_period,
        exhausted_period,
        data_barred,
        network_pending,
    )
    return Debit(card, left, new_state, events)


def _threshold(
    kind: CardEventKind, period: str, left_mb: int, period_quota_mb: int, percent: int
) -> ThresholdEvent:
    return ThresholdEvent(
        kind,
        {
            "period": period,
            "data_quota_mb": left_mb,
            "period_quota_mb": period_quota_mb,
            "percent": percent,
        },
    )


def wants_data_barred(card: Card) -> bool:
    """A prepaid card with no data left has no internet until it is renewed (R6)."""
    return card.kind is CardKind.PREPAID and card.data_quota_mb == 0
