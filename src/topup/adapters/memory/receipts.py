"""Read-only queries for receipts and card-number recovery, in memory."""

from __future__ import annotations

from topup.adapters.memory.tables import Tables
from topup.domain.ledger import EntryKind
from topup.domain.records import ReceiptFacts, RenewalRecord


class MemoryReceiptQueries:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def by_number(self, receipt_number: str) -> ReceiptFacts | None:
        for renewal in self._tables.renewals.values():
            if renewal.receipt_number == receipt_number:
                return self._receipt(renewal)
        return None

    async def by_renewal(self, renewal_id: str) -> ReceiptFacts | None:
        renewal = self._tables.renewals.get(renewal_id)
        return None if renewal is None else self._receipt(renewal)

    async def card_numbers_by_email(self, email: str, *, limit: int) -> list[tuple[str, str]]:
        found = sorted(
            (card.msisdn, card.email)
            for card in self._tables.cards.values()
            if card.email.lower() == email.lower()
        )
        return found[:limit]

    def _receipt(self, renewal: RenewalRecord) -> ReceiptFacts | None:
        if renewal.paid_at is None:  # only a paid renewal has a receipt
            return None
        tables = self._tables
        card = tables.cards[renewal.card_id]
        plan = tables.plans.get(renewal.plan_code)
        payment = next((p for p in tables.payments.values() if p.renewal_id == renewal.id), None)
        refunded_at = next(
            (
                at
                for _, entry, at in tables.ledger_entries
                if entry.renewal_id == renewal.id and entry.kind is EntryKind.REFUND
            ),
            None,
        )
        return ReceiptFacts(
            renewal_id=renewal.id,
            receipt_number=renewal.receipt_number,
            card_id=renewal.card_id,
            plan_code=renewal.plan_code,
            plan_kind=renewal.kind,
            status=renewal.status,
            amount=renewal.amount,
            paid_at=renewal.paid_at,
            channel=renewal.channel,
            msisdn=card.msisdn,
            card_kind=card.kind,
            plan_names={} if plan is None else dict(plan.names),
            method=None if payment is None else payment.method,
            brand=None if payment is None else payment.brand,
            last4=None if payment is None else payment.last4,
            refunded_at=refunded_at,
        )
