"""What services hand back to entrypoints: typed, frozen views keeping Money, datetimes and
enums raw; each entrypoint formats them for its audience (``entrypoints.views_json`` for JSON)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from topup.domain.cards import Card, CardKind, CardStatus, status_at
from topup.domain.ledger import EntryKind
from topup.domain.money import Money
from topup.domain.plans import Plan
from topup.domain.records import CardEvent, PaymentRecord, RenewalRecord
from topup.domain.renewal import Transition


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RenewalView:
    renewal: RenewalRecord
    payment: PaymentRecord | None
    timeline: list[Transition] = field(default_factory=list)
    card_number: str = ""
    replayed: bool = False

    @property
    def id(self) -> str:
        return self.renewal.id

    @property
    def status(self) -> str:
        return self.renewal.status.value

    def to_dict(self) -> dict[str, Any]:
        renewal = self.renewal
        data: dict[str, Any] = {
            "id": renewal.id,
            "status": renewal.status.value,
            "card_number": self.card_number,
            "plan": renewal.plan_code,
            "kind": renewal.kind.value,
            "channel": renewal.channel,
            "amount": renewal.amount.decimal_text(),
            "amount_minor": renewal.amount.minor,
            "currency": renewal.amount.currency,
            "decline_code": renewal.decline_code,
            "created_at": iso(renewal.created_at),
            "paid_at": iso(renewal.paid_at),
            "completed_at": iso(renewal.completed_at),
            "estimated_activation_by": iso(renewal.expected_by),
            "contact_support_after": iso(renewal.contact_after),
            "idempotency_key": renewal.idempotency_key,
            "receipt_number": renewal.receipt_number if renewal.paid_at is not None else None,
            "timeline": [
                {
                    "from": None if step.from_status is None else step.from_status.value,
                    "to": step.to_status.value,
                    "at": iso(step.at),
                    "reason": step.reason,
                }
                for step in self.timeline
            ],
        }
        if self.payment is not None:
            payment = self.payment
            data["payment"] = {
                "status": payment.status,
                "method": payment.method,
                "brand": payment.brand,
                "funding": payment.funding,
                "last4": payment.last4,
                "expiry": f"{payment.expiry_month:02d}/{payment.expiry_year % 100:02d}"
                if payment.expiry_month
                else None,
                "gateway_reference": payment.gateway_reference,
                "decline_code": payment.decline_code,
                "next_check_at": iso(payment.next_check_at),
                "flagged_for_staff": payment.flagged_for_staff,
            }
            if renewal.status.value == "requires_action":
                data["next_action"] = (
                    {"type": "approve_in_wallet", "url": payment.action_url}
                    if payment.action_url
                    else {"type": "payment_password"}
                )
        return data


@dataclass(frozen=True)
class CardView:
    """A card and its balance as of ``now``: its status is the one it has at that moment (the
    stored one may be stale until the worker moves it), and when its grace ends."""

    id: str
    msisdn: str
    iccid: str
    kind: CardKind
    status: CardStatus
    currency: str
    credit: Money
    data_quota_mb: int
    validity_end: dt.datetime | None
    grace_end: dt.datetime | None
    bill_due: Money
    bill_due_date: dt.datetime | None


def card_view(card: Card, *, now: dt.datetime, grace_period_days: int) -> CardView:
    grace_end = (
        card.validity_end + dt.timedelta(days=grace_period_days)
        if card.kind is CardKind.PREPAID and card.validity_end is not None
        else None
    )
    return CardView(
        id=card.id,
        msisdn=card.msisdn,
        iccid=card.iccid,
        kind=card.kind,
        status=status_at(card, now, grace_period_days),
        currency=card.currency,
        credit=card.credit,
        data_quota_mb=card.data_quota_mb,
        validity_end=card.validity_end,
        grace_end=grace_end,
        bill_due=card.bill_due,
        bill_due_date=card.bill_due_date,
    )


@dataclass(frozen=True)
class PlanOffer:
    """A plan on sale, at the price this card would pay (a postpaid bill: what is due)."""

    plan: Plan
    price: Money


@dataclass(frozen=True)
class CardPlans:
    """What anyone may learn of a card by its number, and the plans it may buy on a channel."""

    card: CardView
    channel: str
    plans: list[PlanOffer]


@dataclass(frozen=True)
class LedgerLine:
    id: int
    kind: EntryKind
    memo: str
    at: dt.datetime


@dataclass(frozen=True)
class CardHistory:
    """A card's renewals, events and ledger entries, each newest first."""

    card: CardView
    renewals: list[RenewalRecord]
    card_events: list[CardEvent]
    ledger_entries: list[LedgerLine]


@dataclass(frozen=True)
class TransactionsPage:
    """A page of a card's renewals, newest first; ``next_cursor`` continues after it."""

    card_number: str
    renewals: list[RenewalRecord]
    next_cursor: str | None
