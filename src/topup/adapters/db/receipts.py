"""Read-only queries for receipts and card-number recovery. They never write or commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.cards import CardKind
from topup.domain.ledger import EntryKind
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.records import ReceiptFacts
from topup.domain.renewal import RenewalStatus

_REFUNDS = t.ledger_entries.alias("refunds")
_RECEIPTS = (
    select(
        t.renewals.c.id.label("renewal_id"),
        t.renewals.c.receipt_number,
        t.renewals.c.card_id,
        t.renewals.c.plan_code,
        t.renewals.c.kind.label("plan_kind"),
        t.renewals.c.status,
        t.renewals.c.amount_minor,
        t.renewals.c.currency,
        t.renewals.c.paid_at,
        t.renewals.c.channel,
        t.cards.c.msisdn,
        t.cards.c.kind.label("card_kind"),
        t.plans.c.names.label("plan_names"),
        t.payments.c.method,
        t.payments.c.brand,
        t.payments.c.last4,
        _REFUNDS.c.created_at.label("refunded_at"),
    )
    .select_from(
        t.renewals.join(t.cards, t.cards.c.id == t.renewals.c.card_id)
        # The plan may have been withdrawn since: a renewal keeps its own terms.
        .outerjoin(t.plans, t.plans.c.code == t.renewals.c.plan_code)
        .outerjoin(t.payments, t.payments.c.renewal_id == t.renewals.c.id)
        .outerjoin(
            _REFUNDS,
            and_(
                _REFUNDS.c.renewal_id == t.renewals.c.id,
                _REFUNDS.c.kind == EntryKind.REFUND.value,
            ),
        )
    )
    # Only a paid renewal has a receipt.
    .where(t.renewals.c.paid_at.is_not(None))
)


class ReceiptQueries:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def by_number(self, receipt_number: str) -> ReceiptFacts | None:
        """The paid renewal with this receipt number, with what its receipt shows; else None."""
        return await self._one(_RECEIPTS.where(t.renewals.c.receipt_number == receipt_number))

    async def by_renewal(self, renewal_id: str) -> ReceiptFacts | None:
        """The receipt of this renewal if it is paid; else None."""
        return await self._one(_RECEIPTS.where(t.renewals.c.id == renewal_id))

    async def card_numbers_by_email(self, email: str, *, limit: int) -> list[tuple[str, str]]:
        """(mobile number in E.164, e-mail as registered) of the cards registered with
        ``email``, compared without regard to case, in a stable order; at most ``limit``."""
        rows = await self._connection.execute(
            select(t.cards.c.msisdn, t.cards.c.email)
            .where(func.lower(t.cards.c.email) == email.lower())
            .order_by(t.cards.c.msisdn)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in rows]

    async def _one(self, query: Any) -> ReceiptFacts | None:
        row = (await self._connection.execute(query)).first()
        return None if row is None else _facts(row)


def _facts(row: Row[Any]) -> ReceiptFacts:
    m = row._mapping
    return ReceiptFacts(
        renewal_id=m["renewal_id"],
        receipt_number=m["receipt_number"],
        card_id=m["card_id"],
        plan_code=m["plan_code"],
        plan_kind=PlanKind(m["plan_kind"]),
        status=RenewalStatus(m["status"]),
        amount=Money(int(m["amount_minor"]), m["currency"]),
        paid_at=m["paid_at"],
        channel=m["channel"],
        msisdn=m["msisdn"],
        card_kind=CardKind(m["card_kind"]),
        plan_names=dict(m["plan_names"] or {}),
        method=m["method"],
        brand=m["brand"],
        last4=m["last4"],
        refunded_at=m["refunded_at"],
    )
