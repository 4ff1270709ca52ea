"""Cards (subscription lines) and their lifecycle.

Prepaid:  active --(validity end)--> grace --(grace end)--> expired
          a renewal in active or grace extends validity from max(now, validity end) and adds quota/credit.
Postpaid: active --(bill overdue)--> suspended; paying the whole bill restores active.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum

from topup.domain.errors import ConflictError, InvariantError, require
from topup.domain.money import Money


class CardKind(StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"


class CardStatus(StrEnum):
    ACTIVE = "active"
    GRACE = "grace"
    EXPIRED = "expired"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Card:
    id: str
    msisdn: str  # E.164
    iccid: str
    kind: CardKind
    status: CardStatus
    currency: str
    credit: Money  # prepaid credit; zero for postpaid
    data_quota_mb: int
    validity_end: dt.datetime | None  # prepaid; None for postpaid
    bill_due: Money  # postpaid outstanding bill; zero for prepaid
    bill_due_date: dt.datetime | None
    holder_name: str = ""
    email: str = ""
    version: int = 0

    def check_invariants(self) -> None:
        require(self.credit.currency == self.currency, "card credit in the wrong currency")
        require(self.bill_due.currency == self.currency, "card bill in the wrong currency")
        require(self.credit.minor >= 0, f"card {self.id} credit is negative")
        require(self.data_quota_mb >= 0, f"card {self.id} quota is negative")
        require(self.bill_due.minor >= 0, f"card {self.id} bill due is negative")


@dataclass(frozen=True, slots=True)
class Forfeit:
    """What expiry took away; written to the ledger, never dropped silently."""

    credit: Money
    data_quota_mb: int


def prepaid_status_at(card: Card, at: dt.datetime, grace_period_days: int) -> CardStatus:
    require(card.kind is CardKind.PREPAID, "prepaid status asked of a postpaid card")
    if card.status is CardStatus.EXPIRED:
        return CardStatus.EXPIRED  # expiry is final; only customer service brings a line back
    if card.validity_end is None:
        return CardStatus.EXPIRED
    if at < card.validity_end:
        return CardStatus.ACTIVE
    if at < card.validity_end + dt.timedelta(days=grace_period_days):
        return CardStatus.GRACE
    return CardStatus.EXPIRED


def postpaid_status_at(card: Card, at: dt.datetime) -> CardStatus:
    require(card.kind is CardKind.POSTPAID, "postpaid status asked of a prepaid card")
    if card.bill_due.minor > 0 and card.bill_due_date is not None and at >= card.bill_due_date:
        return CardStatus.SUSPENDED
    return CardStatus.ACTIVE


def status_at(card: Card, at: dt.datetime, grace_period_days: int) -> CardStatus:
    if card.kind is CardKind.PREPAID:
        return prepaid_status_at(card, at, grace_period_days)
    return postpaid_status_at(card, at)


def advance(card: Card, at: dt.datetime, grace_period_days: int) -> tuple[Card, Forfeit | None]:
    """Move a card to the status it has at ``at``. Expiry forfeits credit and quota, returned."""
    new_status = status_at(card, at, grace_period_days)
    if new_status is card.status:
        return card, None
    if new_status is CardStatus.EXPIRED:
        forfeit = Forfeit(card.credit, card.data_quota_mb)
        expired = replace(
            card, status=new_status, credit=Money.zero(card.currency), data_quota_mb=0
        )
        return expired, forfeit
    return replace(card, status=new_status), None


def check_renewable(card: Card, at: dt.datetime, grace_period_days: int) -> None:
    """A prepaid card can be renewed while active or in grace; postpaid cards always."""
    if (
        card.kind is CardKind.PREPAID
        and status_at(card, at, grace_period_days) is CardStatus.EXPIRED
    ):
        raise ConflictError(
            "this card's grace period has ended; customer service can help restore the number",
            code="card_expired",
        )


def apply_prepaid_renewal(
    card: Card,
    *,
    at: dt.datetime,
    grace_period_days: int,
    validity_days: int,
    data_quota_mb: int,
    credit: Money,
    paid_at: dt.datetime | None = None,
) -> Card:
    """Extend validity from max(now, validity end) and add quota and credit. A renewal paid for
    while the card could be renewed is honoured even if its grace ended before activation."""
    if card.kind is not CardKind.PREPAID:
        raise InvariantError("prepaid renewal applied to a postpaid card")
    check_renewable(card, paid_at or at, grace_period_days)
    base = at if card.validity_end is None else max(at, card.validity_end)
    renewed = replace(
        card,
        status=CardStatus.ACTIVE,
        validity_end=base + dt.timedelta(days=validity_days),
        data_quota_mb=card.data_quota_mb + data_quota_mb,
        credit=card.credit + credit,
        version=card.version + 1,
    )
    renewed.check_invariants()
    return renewed


def apply_bill_payment(card: Card, *, at: dt.datetime, amount: Money) -> Card:
    """Pay (part of) the bill; a fully paid bill lifts a suspension."""
    if card.kind is not CardKind.POSTPAID:
        raise InvariantError("bill payment applied to a prepaid card")
    require(amount.minor > 0, f"a bill payment must be positive, got {amount}")
    paid = replace(card, bill_due=card.bill_due - amount, version=card.version + 1)
    if paid.bill_due.minor < 0:
        raise InvariantError(f"bill payment {amount} exceeds what card {card.id} owes")
    paid = replace(paid, status=postpaid_status_at(paid, at))
    if paid.bill_due.is_zero:
        paid = replace(paid, bill_due_date=None, status=CardStatus.ACTIVE)
    paid.check_invariants()
    return paid


def issue_bill(card: Card, *, amount: Money, due_date: dt.datetime) -> Card:
    if card.kind is not CardKind.POSTPAID:
        raise InvariantError("bill issued to a prepaid card")
    require(amount.minor > 0, f"a bill must be positive, got {amount}")
    due = card.bill_due_date if card.bill_due_date is not None else due_date
    billed = replace(
        card,
        bill_due=card.bill_due + amount,
        bill_due_date=min(due, due_date),
        version=card.version + 1,
    )
    billed.check_invariants()
    return billed
