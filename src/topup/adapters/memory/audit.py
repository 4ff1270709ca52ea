"""What ``topup audit`` recomputes, over the in-memory tables: the same answers as
``adapters.db.audit`` gives for the same rows, so that use cases can be audited on fakes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from topup.adapters.memory.tables import Tables
from topup.domain.ledger import EntryKind
from topup.domain.records import (
    BalanceMismatch,
    CardLedgerBalances,
    JobKind,
    JobOutcome,
    JobStatus,
    JobWithoutRenewal,
    PaymentRecord,
    RefundedButApplied,
    RenewalEntryCounts,
    SettlementPayment,
    StalledRenewal,
    SubjectKind,
    UnbalancedEntry,
)
from topup.domain.renewal import RenewalStatus

_NOT_FINAL = (
    RenewalStatus.PENDING_PAYMENT,
    RenewalStatus.REQUIRES_ACTION,
    RenewalStatus.PAYMENT_PENDING,
    RenewalStatus.ACTIVATING,
)
_SETTLED_KINDS = (EntryKind.CAPTURE, EntryKind.ACTIVATION, EntryKind.REFUND)


class MemoryAuditQueries:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def unbalanced_entries(self) -> list[UnbalancedEntry]:
        out = []
        for entry_id, entry, _ in self._tables.ledger_entries:
            totals: dict[str, int] = defaultdict(int)
            for posting in entry.postings:
                totals[posting.amount.currency] += posting.amount.minor
            out += [
                UnbalancedEntry(entry_id, currency, total)
                for currency, total in totals.items()
                if total != 0
            ]
        return out

    async def entries_with_too_few_postings(self) -> list[int]:
        return [
            entry_id
            for entry_id, entry, _ in self._tables.ledger_entries
            if len(entry.postings) < 2
        ]

    async def balance_mismatches(self) -> list[BalanceMismatch]:
        sums: dict[tuple[str, str], int] = defaultdict(int)
        for _, entry, _ in self._tables.ledger_entries:
            for posting in entry.postings:
                sums[posting.account, posting.amount.currency] += posting.amount.minor
        stored = self._tables.balances
        return [
            BalanceMismatch(account, currency, stored.get(key, 0), sums.get(key, 0))
            for key in sorted(stored.keys() | sums.keys())
            for account, currency in [key]
            if stored.get(key, 0) != sums.get(key, 0)
        ]

    async def renewal_entry_counts(self) -> list[RenewalEntryCounts]:
        counts: dict[tuple[str, EntryKind], int] = defaultdict(int)
        for _, entry, _ in self._tables.ledger_entries:
            if entry.renewal_id is not None:
                counts[entry.renewal_id, entry.kind] += 1
        return [
            RenewalEntryCounts(
                renewal_id=renewal.id,
                status=renewal.status.value,
                captures=counts[renewal.id, EntryKind.CAPTURE],
                activations=counts[renewal.id, EntryKind.ACTIVATION],
                refunds=counts[renewal.id, EntryKind.REFUND],
            )
            for renewal in self._tables.renewals.values()
        ]

    async def card_balances(self) -> list[CardLedgerBalances]:
        balances = self._tables.balances
        return [
            CardLedgerBalances(
                card_id=card.id,
                kind=card.kind.value,
                currency=card.currency,
                credit_minor=card.credit.minor,
                bill_due_minor=card.bill_due.minor,
                credit_account_minor=balances.get((f"card_credit:{card.id}", card.currency), 0),
                receivable_account_minor=balances.get(
                    (f"card_receivable:{card.id}", card.currency), 0
                ),
            )
            for card in self._tables.cards.values()
        ]

    async def stalled_renewals(self) -> list[StalledRenewal]:
        queued = {
            job.subject.id
            for job in self._tables.jobs.values()
            if job.status is JobStatus.QUEUED
            and job.subject.kind is SubjectKind.RENEWAL
            and job.kind in (JobKind.ACTIVATE, JobKind.REFUND)
        }
        payments = self._payments_by_renewal()
        out = []
        for renewal in self._tables.renewals.values():
            payment = payments.get(renewal.id)
            if (
                renewal.status in _NOT_FINAL
                and renewal.id not in queued
                and (payment is None or payment.next_check_at is None)
            ):
                status = None if payment is None else payment.status.value
                out.append(StalledRenewal(renewal.id, renewal.status.value, status))
        return out

    async def refunded_although_applied(self) -> list[RefundedButApplied]:
        renewals = self._tables.renewals
        found = [
            RefundedButApplied(job.subject.id, job.id)
            for job in self._tables.jobs.values()
            if job.subject.kind is SubjectKind.RENEWAL
            and job.kind is JobKind.ACTIVATE
            and job.outcome is JobOutcome.APPLIED
            and job.subject.id in renewals
            and renewals[job.subject.id].status is RenewalStatus.REFUNDED
        ]
        return sorted(found, key=lambda row: (row.renewal_id, row.job_id))

    async def jobs_about_missing_renewals(self) -> list[JobWithoutRenewal]:
        return [
            JobWithoutRenewal(job.id, job.subject.id)
            for job in sorted(self._tables.jobs.values(), key=lambda job: job.id)
            if job.subject.kind is SubjectKind.RENEWAL
            and job.subject.id not in self._tables.renewals
        ]

    # --- settlement -------------------------------------------------------------------------

    async def settlement_payments(
        self,
        *,
        payment_ids: Sequence[str] = (),
        charge_references: Sequence[str] = (),
        refund_references: Sequence[str] = (),
    ) -> list[SettlementPayment]:
        ids, charges, refunds = set(payment_ids), set(charge_references), set(refund_references)
        return self._settlement_rows(
            payment
            for payment in self._tables.payments.values()
            if payment.id in ids
            or (payment.gateway_reference is not None and payment.gateway_reference in charges)
            or (payment.refund_reference is not None and payment.refund_reference in refunds)
        )

    async def payments_captured_between(
        self, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        return self._written_between(EntryKind.CAPTURE, start, end, gateway=gateway)

    async def payments_refunded_between(
        self, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        return self._written_between(EntryKind.REFUND, start, end, gateway=gateway)

    def _written_between(
        self, kind: EntryKind, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        rows = self._settlement_rows(
            payment for payment in self._tables.payments.values() if payment.gateway == gateway
        )
        if kind is EntryKind.CAPTURE:
            return [row for row in rows if _written_in(row.captured_at, start, end)]
        return [row for row in rows if _written_in(row.refunded_at, start, end)]

    def _settlement_rows(self, payments: Iterable[PaymentRecord]) -> list[SettlementPayment]:
        written: dict[tuple[str, EntryKind], dt.datetime] = {
            (entry.renewal_id, entry.kind): at
            for _, entry, at in self._tables.ledger_entries
            if entry.renewal_id is not None and entry.kind in _SETTLED_KINDS
        }
        rows: list[SettlementPayment] = []
        for payment in payments:
            renewal = self._tables.renewals.get(payment.renewal_id)
            if renewal is None:
                continue
            rows.append(
                SettlementPayment(
                    id=payment.id,
                    renewal_id=payment.renewal_id,
                    gateway=payment.gateway,
                    status=payment.status.value,
                    amount_minor=payment.amount.minor,
                    currency=payment.amount.currency,
                    gateway_reference=payment.gateway_reference,
                    refund_reference=payment.refund_reference,
                    renewal_status=renewal.status.value,
                    captured_at=written.get((renewal.id, EntryKind.CAPTURE)),
                    activated_at=written.get((renewal.id, EntryKind.ACTIVATION)),
                    refunded_at=written.get((renewal.id, EntryKind.REFUND)),
                )
            )
        return rows

    def _payments_by_renewal(self) -> dict[str, PaymentRecord]:
        return {payment.renewal_id: payment for payment in self._tables.payments.values()}


def _written_in(at: object, start: dt.datetime, end: dt.datetime) -> bool:
    return isinstance(at, dt.datetime) and start <= at < end
