"""Read-only queries for receipts and card-number recovery. They never write or commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, func, select, union
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
        ``email``, compared without regard to case: on the card itself, through a confirmed
        account that linked the card, or given with a paid renewal of the card. One row per
        card (one spelling of the address for it), in a stable order; at most ``limit``."""
        lowered = email.lower()
        cards, renewals, links, accounts = t.cards, t.renewals, t.card_links, t.accounts
        on_card = select(cards.c.msisdn, cards.c.email.label("email")).where(
            func.lower(cards.c.email) == lowered
        )
        by_account = (
            select(cards.c.msisdn, accounts.c.email.label("email"))
            .select_from(
                cards.join(links, links.c.card_id == cards.c.id).join(
                    accounts, accounts.c.id == links.c.account_id
                )
            )
            .where(accounts.c.email == lowered, accounts.c.confirmed_at.is_not(None))
        )
        by_renewal = (
            select(cards.c.msisdn, renewals.c.receipt_email.label("email"))
            .select_from(renewals.join(cards, cards.c.id == renewals.c.card_id))
            .where(
                renewals.c.receipt_email.is_not(None),
                func.lower(renewals.c.receipt_email) == lowered,
                renewals.c.paid_at.is_not(None),
            )
        )
        found = union(on_card, by_account, by_renewal).subquery()
        rows = await self._connection.execute(
            select(found.c.msisdn, func.min(found.c.email))
            .group_by(found.c.msisdn)
            .order_by(found.c.msisdn)
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
