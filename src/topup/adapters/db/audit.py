"""Read-only queries the audit needs: recomputed sums compared with what is stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.records import (
    BalanceMismatch,
    CardLedgerBalances,
    JobKind,
    JobOutcome,
    JobStatus,
    JobWithoutRenewal,
    RefundedButApplied,
    RenewalEntryCounts,
    SettlementPayment,
    StalledRenewal,
    SubjectKind,
    UnbalancedEntry,
)
from topup.domain.renewal import RenewalStatus


class AuditQueries:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def unbalanced_entries(self) -> list[UnbalancedEntry]:
        p = t.ledger_postings
        rows = await self._connection.execute(
            select(p.c.entry_id, p.c.currency, func.sum(p.c.amount_minor))
            .group_by(p.c.entry_id, p.c.currency)
            .having(func.sum(p.c.amount_minor) != 0)
        )
        return [UnbalancedEntry(int(r[0]), r[1], int(r[2])) for r in rows]

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

    async def balance_mismatches(self) -> list[BalanceMismatch]:
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
        out: list[BalanceMismatch] = []
        for query in (stored_vs_sum, missing):
            for r in await self._connection.execute(query):
                if int(r[2]) != int(r[3]):
                    out.append(BalanceMismatch(r[0], r[1], int(r[2]), int(r[3])))
        return out

    async def renewal_entry_counts(self) -> list[RenewalEntryCounts]:
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
            RenewalEntryCounts(
                renewal_id=row[0],
                status=row[1],
                captures=int(row[2] or 0),
                activations=int(row[3] or 0),
                refunds=int(row[4] or 0),
            )
            for row in rows
        ]

    async def card_balances(self) -> list[CardLedgerBalances]:
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
            CardLedgerBalances(
                card_id=row[0],
                kind=row[1],
                currency=row[2],
                credit_minor=int(row[3]),
                bill_due_minor=int(row[4]),
                credit_account_minor=int(row[5]),
                receivable_account_minor=int(row[6]),
            )
            for row in rows
        ]

    async def stalled_renewals(self) -> list[StalledRenewal]:
        """Non-terminal renewals with no queued job and no scheduled payment check."""
        r = t.renewals
        p = t.payments
        jobs = t.jobs
        queued = select(jobs.c.subject_id).where(
            jobs.c.status == JobStatus.QUEUED.value,
            jobs.c.subject_kind == SubjectKind.RENEWAL.value,
            jobs.c.kind.in_((JobKind.ACTIVATE.value, JobKind.REFUND.value)),
        )
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
        return [StalledRenewal(row[0], row[1], row[2]) for row in rows]

    async def refunded_although_applied(self) -> list[RefundedButApplied]:
        """Refunded renewals the network answered ``applied`` to: the subscriber kept the
        data and got the money back."""
        r = t.renewals
        jobs = t.jobs
        rows = await self._connection.execute(
            select(r.c.id, jobs.c.id)
            .select_from(
                r.join(
                    jobs,
                    and_(
                        jobs.c.subject_kind == SubjectKind.RENEWAL.value,
                        jobs.c.subject_id == r.c.id,
                    ),
                )
            )
            .where(
                r.c.status == RenewalStatus.REFUNDED.value,
                jobs.c.kind == JobKind.ACTIVATE.value,
                jobs.c.outcome == JobOutcome.APPLIED.value,
            )
            .order_by(r.c.id, jobs.c.id)
        )
        return [RefundedButApplied(row[0], int(row[1])) for row in rows]

    async def jobs_about_missing_renewals(self) -> list[JobWithoutRenewal]:
        """Jobs about a renewal that does not exist (jobs name their
        subject without a foreign key, since a subject may be a renewal, a card or a batch)."""
        r = t.renewals
        jobs = t.jobs
        rows = await self._connection.execute(
            select(jobs.c.id, jobs.c.subject_id)
            .select_from(jobs.outerjoin(r, r.c.id == jobs.c.subject_id))
            .where(jobs.c.subject_kind == SubjectKind.RENEWAL.value, r.c.id.is_(None))
            .order_by(jobs.c.id)
        )
        return [JobWithoutRenewal(int(row[0]), row[1]) for row in rows]

    # --- settlement: our payments as a gateway's settlement file is matched with them ---------

    async def settlement_payments(
        self,
        *,
        payment_ids: Sequence[str] = (),
        charge_references: Sequence[str] = (),
        refund_references: Sequence[str] = (),
    ) -> list[SettlementPayment]:
        """Payments with any of these ids, gateway references or refund references, each with
        its renewal's status and the times of its capture, activation and refund entries. The
        caller bounds the lists; ids use the primary key, references scan the payments."""
        p = t.payments
        conditions = [
            column.in_(list(values))
            for column, values in (
                (p.c.id, payment_ids),
                (p.c.gateway_reference, charge_references),
                (p.c.refund_reference, refund_references),
            )
            if values
        ]
        if not conditions:
            return []
        return await self._settlement_rows(_settlement_payment_query().where(or_(*conditions)))

    async def payments_captured_between(
        self, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        """Payments through ``gateway`` whose capture entry was written in [start, end)."""
        captured_at = _ENTRY_OF_KIND["capture"].c.created_at
        return await self._settlement_rows(
            _settlement_payment_query().where(
                t.payments.c.gateway == gateway, captured_at >= start, captured_at < end
            )
        )

    async def payments_refunded_between(
        self, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        """Payments through ``gateway`` whose refund entry was written in [start, end)."""
        refunded_at = _ENTRY_OF_KIND["refund"].c.created_at
        return await self._settlement_rows(
            _settlement_payment_query().where(
                t.payments.c.gateway == gateway, refunded_at >= start, refunded_at < end
            )
        )

    async def _settlement_rows(self, query: Select[Any]) -> list[SettlementPayment]:
        rows = await self._connection.execute(query)
        return [
            SettlementPayment(**{**row._mapping, "amount_minor": int(row.amount_minor)})
            for row in rows
        ]


# One alias of the ledger entries per kind a renewal has at most one of.
_ENTRY_OF_KIND = {
    kind: t.ledger_entries.alias(f"{kind}_entry") for kind in ("capture", "activation", "refund")
}


def _settlement_payment_query() -> Select[Any]:
    """A payment, its renewal's status, and when its capture, activation and refund entries
    were written (None when there is none)."""
    p = t.payments
    r = t.renewals
    entries = _ENTRY_OF_KIND
    joined = p.join(r, r.c.id == p.c.renewal_id)
    for kind, entry in entries.items():
        joined = joined.outerjoin(entry, and_(entry.c.renewal_id == r.c.id, entry.c.kind == kind))
    return select(
        p.c.id,
        p.c.renewal_id,
        p.c.gateway,
        p.c.status,
        p.c.amount_minor,
        p.c.currency,
        p.c.gateway_reference,
        p.c.refund_reference,
        r.c.status.label("renewal_status"),
        entries["capture"].c.created_at.label("captured_at"),
        entries["activation"].c.created_at.label("activated_at"),
        entries["refund"].c.created_at.label("refunded_at"),
    ).select_from(joined)
