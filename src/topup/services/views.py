"""What services hand back to entrypoints: typed, frozen views keeping Money, datetimes and
enums raw; each entrypoint formats them for its audience (``entrypoints.views_json`` for JSON)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from topup.domain.cards import Card, CardKind, CardStatus, status_at
from topup.domain.ledger import EntryKind
from topup.domain.money import Money
from topup.domain.plans import Plan
from topup.domain.records import CardEvent, PaymentRecord, RenewalRecord
from topup.domain.renewal import RenewalStatus, Transition

if TYPE_CHECKING:  # for annotations only: kept out of the CLI's start-up
    from topup.domain.callers import ApiKeyRole
    from topup.domain.methods import PaymentMethod


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
    # A prepaid card with no data left has no internet until it is renewed (R6, issue 11).
    data_exhausted: bool = False


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
        data_exhausted=card.kind is CardKind.PREPAID and card.data_quota_mb == 0,
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


@dataclass(frozen=True)
class MethodsOffer:
    """The methods offered for one renewal here, and when there is none, why."""

    channel: str
    region: str | None
    amount: Money
    methods: list[PaymentMethod]
    reason: str | None  # why nothing is offered, or None


@dataclass(frozen=True)
class ReceiptView:
    """A paid renewal's receipt, for those who may read it. Names are kept in every language
    (``plan_name``, ``method_name`` pick one); the card number is masked."""

    receipt_number: str
    verification_code: str
    operator: str
    paid_at: dt.datetime
    time_zone: str
    card_number: str  # masked
    card_kind: CardKind
    plan_code: str
    plan_names: Mapping[str, str]  # by locale; empty if the plan was withdrawn
    amount: Money
    method: str  # the method's code, "" if unknown
    method_names: Mapping[str, str]  # by locale; empty if the method is not configured
    brand: str
    last4: str
    renewal_id: str
    status: RenewalStatus
    refunded_at: dt.datetime | None

    def plan_name(self, locale: str) -> str:
        return self.plan_names.get(locale) or self.plan_names.get("en") or self.plan_code

    def method_name(self, locale: str) -> str:
        return self.method_names.get(locale) or self.method_names.get("en") or self.method


@dataclass(frozen=True)
class RecoveredCardView:
    """The card a paid receipt is for, to the holder of the receipt (R8): its number in full."""

    receipt_number: str
    card_number: str  # in full, as its country writes it: "+60 12-345 6789"
    card_kind: CardKind
    paid_at: dt.datetime
    plan_code: str
    plan_names: Mapping[str, str]  # by locale; empty if the plan was withdrawn

    def plan_name(self, locale: str) -> str:
        return self.plan_names.get(locale) or self.plan_names.get("en") or self.plan_code


@dataclass(frozen=True)
class ApiKeyView:
    """What lists and answers show of an API key: never its secret nor the secret's hash."""

    id: str
    prefix: str
    name: str
    role: ApiKeyRole
    channel: str
    outlet: str | None
    region: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at else "active"
