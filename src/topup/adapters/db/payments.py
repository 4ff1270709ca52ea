"""Payments of renewals, wallet totals, payment checks due. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Unpack

from sqlalchemy import Row, and_, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import lease_due, many, update_many
from topup.domain.money import Money
from topup.domain.records import PaymentChanges, PaymentRecord, PaymentStatus

# A renewal's columns, then its payment's (by position: cheaper than by label), then the MSISDN.
_RENEWAL_WIDTH = len(t.renewals.c)
_PAYMENT_COLUMNS = [column.name for column in t.payments.c]

_PAYMENTS_BY_RENEWAL = (
    select(t.payments).where(t.payments.c.renewal_id.in_(many())).order_by(t.payments.c.renewal_id)
)

_PAYMENTS_BY_RENEWAL_LOCKED = _PAYMENTS_BY_RENEWAL.with_for_update()

_PAYMENTS_BY_ID = select(t.payments).where(t.payments.c.id.in_(many()))

_LOCK_WALLET_ACCOUNTS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(account, 0)) FROM "
    "(SELECT account FROM unnest(CAST(:fingerprints AS text[])) AS account ORDER BY account) "
    "AS sorted_accounts"
)


def payment_from_row(row: Row[Any], *, labelled: bool = False) -> PaymentRecord:
    """``labelled``: the payment's columns came as ``payment_<name>`` (joined to a renewal)."""
    m = (
        dict(zip(_PAYMENT_COLUMNS, row[_RENEWAL_WIDTH:], strict=False))
        if labelled
        else row._mapping
    )
    return PaymentRecord(
        id=m["id"],
        renewal_id=m["renewal_id"],
        gateway=m["gateway"],
        method=m["method"],
        status=PaymentStatus(m["status"]),
        amount=Money(int(m["amount_minor"]), m["currency"]),
        token_encrypted=m["token_encrypted"],
        brand=m["brand"],
        funding=m["funding"],
        last4=m["last4"],
        expiry_month=int(m["expiry_month"]),
        expiry_year=int(m["expiry_year"]),
        issuer_country=m["issuer_country"],
        gateway_reference=m["gateway_reference"],
        decline_code=m["decline_code"],
        requested_at=m["requested_at"],
        check_attempts=int(m["check_attempts"]),
        next_check_at=m["next_check_at"],
        flagged_for_staff=bool(m["flagged_for_staff"]),
        refund_reference=m["refund_reference"],
        instrument_fingerprint=m["instrument_fingerprint"],
        wallet_account_fingerprint=m["wallet_account_fingerprint"],
        action_url=m["action_url"],
        merchant_initiated=bool(m["merchant_initiated"]),
    )


def payment_values(payment: PaymentRecord, *, at: dt.datetime) -> dict[str, Any]:
    return {
        "id": payment.id,
        "renewal_id": payment.renewal_id,
        "gateway": payment.gateway,
        "method": payment.method,
        "status": payment.status.value,
        "amount_minor": payment.amount.minor,
        "currency": payment.amount.currency,
        "token_encrypted": payment.token_encrypted,
        "brand": payment.brand,
        "funding": payment.funding,
        "last4": payment.last4,
        "expiry_month": payment.expiry_month,
        "expiry_year": payment.expiry_year,
        "issuer_country": payment.issuer_country,
        "gateway_reference": payment.gateway_reference,
        "decline_code": payment.decline_code,
        "instrument_fingerprint": payment.instrument_fingerprint,
        "wallet_account_fingerprint": payment.wallet_account_fingerprint,
        "requested_at": payment.requested_at,
        "check_attempts": payment.check_attempts,
        "next_check_at": payment.next_check_at,
        "flagged_for_staff": payment.flagged_for_staff,
        "refund_reference": payment.refund_reference,
        "action_url": payment.action_url,
        "merchant_initiated": payment.merchant_initiated,
        "created_at": at,
        "updated_at": at,
    }


def _column_values(changes: PaymentChanges) -> dict[str, Any]:
    """Changes as the columns take them (a status by its stored value)."""
    values: dict[str, Any] = dict(changes)
    if "status" in changes:
        values["status"] = changes["status"].value
    return values


class PaymentRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, payments: Sequence[PaymentRecord], *, at: dt.datetime) -> None:
        if payments:
            await self._connection.execute(
                t.payments.insert(), [payment_values(payment, at=at) for payment in payments]
            )

    async def for_renewals(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, PaymentRecord]:
        """Payments by renewal id, locked in renewal order when ``for_update``."""
        if not renewal_ids:
            return {}
        query = _PAYMENTS_BY_RENEWAL_LOCKED if for_update else _PAYMENTS_BY_RENEWAL
        rows = await self._connection.execute(query, {"ids": sorted(set(renewal_ids))})
        return {row.renewal_id: payment_from_row(row) for row in rows}

    async def by_ids(self, payment_ids: Sequence[str]) -> dict[str, PaymentRecord]:
        if not payment_ids:
            return {}
        rows = await self._connection.execute(_PAYMENTS_BY_ID, {"ids": sorted(set(payment_ids))})
        return {row.id: payment_from_row(row) for row in rows}

    async def lock_wallet_accounts(self, fingerprints: Sequence[str]) -> None:
        """Hold these wallet accounts until commit (PostgreSQL advisory locks, taken in sorted
        order), so that concurrent transactions check an account's daily limit one at a time.
        SQLite has one writer at a time already."""
        if not fingerprints or self._connection.dialect.name != "postgresql":
            return
        await self._connection.execute(
            _LOCK_WALLET_ACCOUNTS, {"fingerprints": sorted(set(fingerprints))}
        )

    async def wallet_totals_since(
        self, fingerprints: Sequence[str], *, since: dt.datetime
    ) -> dict[tuple[str, str], int]:
        """What each of these wallet accounts has paid, or has waiting, since ``since``, per
        method: ``{(fingerprint, method): amount_minor}`` (declined and cancelled ones excluded)."""
        if not fingerprints:
            return {}
        p = t.payments
        rows = await self._connection.execute(
            select(p.c.wallet_account_fingerprint, p.c.method, func.sum(p.c.amount_minor))
            .where(
                p.c.wallet_account_fingerprint.in_(sorted(set(fingerprints))),
                p.c.requested_at >= since,
                p.c.status.not_in(["declined", "cancelled"]),
            )
            .group_by(p.c.wallet_account_fingerprint, p.c.method)
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def update_many(self, changes: Sequence[tuple[str, PaymentChanges]]) -> None:
        """Several payments' changes, each ``(payment id, changes)``."""
        await update_many(
            self._connection,
            t.payments,
            [(payment_id, _column_values(values)) for payment_id, values in changes],
        )

    async def for_renewal(
        self, renewal_id: str, *, for_update: bool = False
    ) -> PaymentRecord | None:
        query = select(t.payments).where(t.payments.c.renewal_id == renewal_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return None if row is None else payment_from_row(row)

    async def update(self, payment_id: str, **changes: Unpack[PaymentChanges]) -> None:
        await self._connection.execute(
            update(t.payments)
            .where(t.payments.c.id == payment_id)
            .values(**_column_values(changes))
        )

    async def claim_due_checks(
        self,
        *,
        statuses: Sequence[PaymentStatus],
        now: dt.datetime,
        lease_until: dt.datetime,
        limit: int,
    ) -> list[PaymentRecord]:
        """Take payments whose outcome must be asked for; other workers skip them until the lease ends."""
        rows = await lease_due(
            self._connection,
            t.payments,
            and_(
                t.payments.c.status.in_([status.value for status in statuses]),
                t.payments.c.next_check_at <= now,
            ),
            order_by=t.payments.c.next_check_at,
            limit=limit,
            values={
                "next_check_at": lease_until,
                "check_attempts": t.payments.c.check_attempts + 1,
                "updated_at": now,
            },
        )
        return [payment_from_row(row) for row in rows]
