"""Read-only queries the audit needs: recomputed sums compared with what is stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t


class AuditQueries:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def unbalanced_entries(self) -> list[tuple[int, str, int]]:
        p = t.ledger_postings
        rows = await self._connection.execute(
            select(p.c.entry_id, p.c.currency, func.sum(p.c.amount_minor))
            .group_by(p.c.entry_id, p.c.currency)
            .having(func.sum(p.c.amount_minor) != 0)
        )
        return [(int(r[0]), r[1], int(r[2])) for r in rows]

    async def entries_with_too_few_postings(self) -> list[int]:
        p = t.ledger_postings
        e = t.ledger_entries
        counts = (
            select(e.c.id, func.count(p.c.id).label("n"))
            .select_from(e.outerjoin(p, p.c.entry_id == e.c.id))
            .group_by(e.c.id)
            .subquery()
        )
        rows = await self._connection.execute(select(counts.c.id).where(counts.c.n < 2))
        return [int(r[0]) for r in rows]

    async def balance_mismatches(self) -> list[tuple[str, str, int, int]]:
        """(account, currency, stored, recomputed) wherever they differ, in either direction."""
        p = t.ledger_postings
        b = t.account_balances
        sums = (
            select(p.c.account, p.c.currency, func.sum(p.c.amount_minor).label("total"))
            .group_by(p.c.account, p.c.currency)
            .subquery()
        )
        stored_vs_sum = select(
            b.c.account, b.c.currency, b.c.balance_minor, func.coalesce(sums.c.total, 0)
        ).select_from(
            b.outerjoin(sums, and_(sums.c.account == b.c.account, sums.c.currency == b.c.currency))
        )
        missing = (
            select(sums.c.account, sums.c.currency, literal(0), sums.c.total)
            .select_from(
                sums.outerjoin(
                    b, and_(sums.c.account == b.c.account, sums.c.currency == b.c.currency)
                )
            )
            .where(b.c.account.is_(None))
        )
        out: list[tuple[str, str, int, int]] = []
        for query in (stored_vs_sum, missing):
            for r in await self._connection.execute(query):
                if int(r[2]) != int(r[3]):
                    out.append((r[0], r[1], int(r[2]), int(r[3])))
        return out

    async def renewal_entry_counts(self) -> list[dict[str, Any]]:
        r = t.renewals
        e = t.ledger_entries
        j = r.outerjoin(e, e.c.renewal_id == r.c.id)

        def count(kind: str) -> Any:
            return func.sum(case((e.c.kind == kind, 1), else_=0)).label(kind)

        rows = await self._connection.execute(
            select(r.c.id, r.c.status, count("capture"), count("activation"), count("refund"))
            .select_from(j)
            .group_by(r.c.id, r.c.status)
        )
        return [
            {
                "id": row[0],
                "status": row[1],
                "capture": int(row[2] or 0),
                "activation": int(row[3] or 0),
                "refund": int(row[4] or 0),
            }
            for row in rows
        ]

    async def card_balances(self) -> list[dict[str, Any]]:
        c = t.cards
        b = t.account_balances
        credit = b.alias("credit")
        receivable = b.alias("receivable")
        rows = await self._connection.execute(
            select(
                c.c.id,
                c.c.kind,
                c.c.currency,
                c.c.credit_minor,
                c.c.bill_due_minor,
                func.coalesce(credit.c.balance_minor, 0),
                func.coalesce(receivable.c.balance_minor, 0),
            ).select_from(
                c.outerjoin(
                    credit,
                    and_(
                        credit.c.account == literal("card_credit:") + c.c.id,
                        credit.c.currency == c.c.currency,
                    ),
                ).outerjoin(
                    receivable,
                    and_(
                        receivable.c.account == literal("card_receivable:") + c.c.id,
                        receivable.c.currency == c.c.currency,
                    ),
                )
            )
        )
        return [
            {
                "id": row[0],
                "kind": row[1],
                "currency": row[2],
                "credit_minor": int(row[3]),
                "bill_due_minor": int(row[4]),
                "credit_account": int(row[5]),
                "receivable_account": int(row[6]),
            }
            for row in rows
        ]

    async def stalled_renewals(self) -> list[dict[str, Any]]:
        """Non-terminal renewals with no queued job and no scheduled payment check."""
        r = t.renewals
        p = t.payments
        jobs = t.jobs
        queued = select(jobs.c.renewal_id).where(jobs.c.status == "queued")
        rows = await self._connection.execute(
            select(r.c.id, r.c.status, p.c.status, p.c.next_check_at)
            .select_from(r.outerjoin(p, p.c.renewal_id == r.c.id))
            .where(
                r.c.status.in_(
                    ["pending_payment", "requires_action", "payment_pending", "activating"]
                ),
                r.c.id.not_in(queued),
                p.c.next_check_at.is_(None),
            )
        )
        return [{"id": row[0], "status": row[1], "payment_status": row[2]} for row in rows]
