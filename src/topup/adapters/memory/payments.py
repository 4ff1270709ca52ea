"""Payments of renewals, wallet totals and payment checks due, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Unpack

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.records import PaymentChanges, PaymentRecord, PaymentStatus, payment_changed

NOT_COUNTED_TODAY = (PaymentStatus.DECLINED, PaymentStatus.CANCELLED)


class MemoryPaymentRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add_many(self, payments: Sequence[PaymentRecord], *, at: dt.datetime) -> None:
        stored = self._tables.payments
        for payment in payments:
            self._tables.require_renewal(payment.renewal_id)
            if payment.id in stored:
                raise unique_violation("payments", payment.id)
            if any(other.renewal_id == payment.renewal_id for other in stored.values()):
                raise unique_violation("payments.renewal_id", payment.renewal_id)
            stored[payment.id] = payment

    async def for_renewals(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, PaymentRecord]:
        wanted = set(renewal_ids)
        return {
            payment.renewal_id: payment
            for payment in self._tables.payments.values()
            if payment.renewal_id in wanted
        }

    async def by_ids(self, payment_ids: Sequence[str]) -> dict[str, PaymentRecord]:
        stored = self._tables.payments
        return {key: stored[key] for key in set(payment_ids) if key in stored}

    async def lock_wallet_accounts(self, fingerprints: Sequence[str]) -> None:
        """Nothing to do: in-memory units of work run one at a time."""

    async def wallet_totals_since(
        self, fingerprints: Sequence[str], *, since: dt.datetime
    ) -> dict[tuple[str, str], int]:
        wanted = set(fingerprints)
        totals: dict[tuple[str, str], int] = {}
        for payment in self._tables.payments.values():
            account = payment.wallet_account_fingerprint
            if (
                account in wanted
                and account is not None
                and payment.requested_at >= since
                and payment.status not in NOT_COUNTED_TODAY
            ):
                key = (account, payment.method)
                totals[key] = totals.get(key, 0) + payment.amount.minor
        return totals

    async def update_many(self, changes: Sequence[tuple[str, PaymentChanges]]) -> None:
        for payment_id, values in changes:
            await self.update(payment_id, **values)

    async def for_renewal(
        self, renewal_id: str, *, for_update: bool = False
    ) -> PaymentRecord | None:
        return (await self.for_renewals([renewal_id])).get(renewal_id)

    async def update(self, payment_id: str, **changes: Unpack[PaymentChanges]) -> None:
        stored = self._tables.payments.get(payment_id)
        if stored is not None:  # an UPDATE that matches no row changes nothing
            self._tables.payments[payment_id] = payment_changed(stored, changes)

    async def claim_due_checks(
        self,
        *,
        statuses: Sequence[PaymentStatus],
        now: dt.datetime,
        lease_until: dt.datetime,
        limit: int,
    ) -> list[PaymentRecord]:
        due = sorted(
            (
                payment
                for payment in self._tables.payments.values()
                if payment.status in statuses
                and payment.next_check_at is not None
                and payment.next_check_at <= now
            ),
            key=lambda payment: (payment.next_check_at or now, payment.id),
        )[:limit]
        leased = []
        for payment in due:
            moved = replace(
                payment, next_check_at=lease_until, check_attempts=payment.check_attempts + 1
            )
            self._tables.payments[payment.id] = moved
            leased.append(moved)
        return leased
