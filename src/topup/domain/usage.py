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


class UsageRecord(NamedTuple):
    """One record from the network, checked (``usage_files`` checks what it reads): which card
    used how much data when. A named tuple: imports make millions of them."""

    record_id: str
    card_id: str
    used_at: dt.datetime
    data_used_mb: int


@dataclass(frozen=True, slots=True)
class InsertedUsage:
    """A card's records new in a batch: how many, how many of an earlier period, and the data
    the others used (what its current period is debited)."""

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


@dataclass(frozen=True, slots=True)
class UsageState:
    """What usage remembers of a card: the period its figures are about, the quota that period
    started from (the 100 % of thresholds), what it used, and which thresholds it raised."""

    card_id: str
    period: str
    period_quota_mb: int
    used_mb: int = 0
    data_low_period: str | None = None
    data_exhausted_period: str | None = None
    data_barred: bool = False  # what the network is (to be) told: no data for this card
    network_pending: bool = False  # the network has not confirmed ``data_barred`` yet

    def for_period(self, period: str, quota_mb: int) -> UsageState:
        """The state in ``period``: a new period starts from the card's quota now."""
        if period == self.period:
            return self
        return replace(self, period=period, period_quota_mb=quota_mb, used_mb=0)


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


@dataclass(frozen=True, slots=True)
class Debit:
    """A card after a batch of its records: the new card, its usage state (None: a card usage
    does not debit, nothing to remember) and its events."""

    card: Card
    state: UsageState | None
    events: tuple[ThresholdEvent, ...]


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
        return Debit(card, state, ())
    current = (state or UsageState(card.id, period, card.data_quota_mb)).for_period(
        period, card.data_quota_mb
    )
    left = max(0, card.data_quota_mb - used_mb)
    debited_card = card if left == card.data_quota_mb else replace(card, data_quota_mb=left)
    current = replace(current, used_mb=current.used_mb + used_mb)
    events: list[ThresholdEvent] = []
    # A threshold is crossed by taking data the card had, in a period that began with some.
    crossing = left < card.data_quota_mb and current.period_quota_mb > 0

    def detail(percent: int) -> dict[str, str | int]:
        return {
            "period": period,
            "data_quota_mb": left,
            "period_quota_mb": current.period_quota_mb,
            "percent": percent,
        }

    if crossing and left == 0 and current.data_exhausted_period != period:
        events.append(ThresholdEvent(CardEventKind.DATA_EXHAUSTED, detail(0)))
        current = replace(current, data_exhausted_period=period, data_low_period=period)
    elif (
        crossing
        and 0 < left <= low_threshold_mb(current.period_quota_mb, low_percent)
        and current.data_low_period != period
    ):
        percent = left * 100 // current.period_quota_mb
        events.append(ThresholdEvent(CardEventKind.DATA_LOW, detail(percent)))
        current = replace(current, data_low_period=period)
    if used_mb > 0 and left == 0 and not current.data_barred:
        current = replace(current, data_barred=True, network_pending=True)
    return Debit(debited_card, current, tuple(events))


def wants_data_barred(card: Card) -> bool:
    """A prepaid card with no data left has no internet until it is renewed (R6)."""
    return card.kind is CardKind.PREPAID and card.data_quota_mb == 0
