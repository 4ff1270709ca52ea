"""Renewals, their timelines and moves. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Unpack

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert, many, update_rows
from topup.adapters.db.payments import payment_from_row
from topup.domain.errors import InvariantError
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.records import PaymentRecord, RenewalChanges, RenewalMove, RenewalRecord
from topup.domain.renewal import TERMINAL_STATUSES, RenewalStatus, Transition, transition

_RENEWALS_BY_ID = select(t.renewals).where(t.renewals.c.id.in_(many())).order_by(t.renewals.c.id)

_RENEWALS_BY_ID_LOCKED = _RENEWALS_BY_ID.with_for_update()

_RENEWALS_BY_KEY = select(t.renewals).where(t.renewals.c.idempotency_key.in_(many()))

_RENEWALS_WITH_CARD_NUMBERS = (
    select(
        t.renewals,
        t.cards.c.msisdn.label("card_msisdn"),
        t.cards.c.iccid.label("card_iccid"),
    )
    .join(t.cards, t.cards.c.id == t.renewals.c.card_id)
    .where(t.renewals.c.id.in_(many()))
)


_RENEWALS_WITH_PAYMENTS = (
    select(
        t.renewals,
        *(column.label(f"payment_{column.name}") for column in t.payments.c),
        t.cards.c.msisdn.label("card_msisdn"),
    )
    .join(t.payments, t.payments.c.renewal_id == t.renewals.c.id)
    .join(t.cards, t.cards.c.id == t.renewals.c.card_id)
    .where(t.renewals.c.id.in_(many()))
    .order_by(t.renewals.c.id)
)

_RENEWALS_WITH_PAYMENTS_LOCKED = _RENEWALS_WITH_PAYMENTS.with_for_update(
    of=[t.renewals, t.payments]
)

_EVENTS_BY_RENEWAL = (
    select(t.renewal_events)
    .where(t.renewal_events.c.renewal_id.in_(many()))
    .order_by(t.renewal_events.c.id)
)


def renewal_from_row(row: Row[Any]) -> RenewalRecord:
    m = row._mapping
    return RenewalRecord(
        id=m["id"],
        card_id=m["card_id"],
        plan_code=m["plan_code"],
        kind=PlanKind(m["kind"]),
        channel=m["channel"],
        amount=Money(int(m["amount_minor"]), m["currency"]),
        data_quota_mb=int(m["data_quota_mb"]),
        validity_days=int(m["validity_days"]),
        status=RenewalStatus(m["status"]),
        idempotency_key=m["idempotency_key"],
        request_fingerprint=m["request_fingerprint"],
        decline_code=m["decline_code"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        paid_at=m["paid_at"],
        completed_at=m["completed_at"],
        expected_by=m["expected_by"],
        contact_after=m["contact_after"],
        receipt_number=m.get("receipt_number"),
        receipt_email=m.get("receipt_email"),
        receipt_language=m.get("receipt_language"),
    )


def renewal_values(renewal: RenewalRecord) -> dict[str, Any]:
    return {
        "id": renewal.id,
        "card_id": renewal.card_id,
        "plan_code": renewal.plan_code,
        "kind": renewal.kind.value,
        "channel": renewal.channel,
        "amount_minor": renewal.amount.minor,
        "currency": renewal.amount.currency,
        "data_quota_mb": renewal.data_quota_mb,
        "validity_days": renewal.validity_days,
        "status": renewal.status.value,
        "idempotency_key": renewal.idempotency_key,
        "request_fingerprint": renewal.request_fingerprint,
        "decline_code": renewal.decline_code,
        "receipt_email": renewal.receipt_email,
        "receipt_language": renewal.receipt_language,
        "receipt_number": renewal.receipt_number,
        "created_at": renewal.created_at,
        "updated_at": renewal.updated_at,
        "paid_at": renewal.paid_at,
        "completed_at": renewal.completed_at,
        "expected_by": renewal.expected_by,
        "contact_after": renewal.contact_after,
    }


class RenewalRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, renewals: Sequence[RenewalRecord]) -> set[str]:
        """Insert renewals; one whose idempotency key another transaction took first is left
        out. Returns the ids inserted."""
        if not renewals:
            return set()
        rows = [renewal_values(renewal) for renewal in renewals]
        statement = (
            dialect_insert(self._connection, t.renewals)
            # Any unique key: the idempotency key, or the id when a retried request brings the
            # same id (replayed runs do) while its first attempt is being inserted.
            .on_conflict_do_nothing()
            .returning(t.renewals.c.id)
        )
        return {row[0] for row in await self._connection.execute(statement, list(rows))}

    async def get_many(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, RenewalRecord]:
        """Renewals by id, locked in id order when ``for_update`` (no deadlock between batches)."""
        if not renewal_ids:
            return {}
        query = _RENEWALS_BY_ID_LOCKED if for_update else _RENEWALS_BY_ID
        rows = await self._connection.execute(query, {"ids": sorted(set(renewal_ids))})
        return {row.id: renewal_from_row(row) for row in rows}

    async def with_payments(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, tuple[RenewalRecord, PaymentRecord, str]]:
        """Renewals and their payments, with the card's MSISDN; both locked (in renewal order)
        when ``for_update``."""
        if not renewal_ids:
            return {}
        query = _RENEWALS_WITH_PAYMENTS_LOCKED if for_update else _RENEWALS_WITH_PAYMENTS
        rows = await self._connection.execute(query, {"ids": sorted(set(renewal_ids))})
        return {
            row.id: (renewal_from_row(row), payment_from_row(row, labelled=True), row.card_msisdn)
            for row in rows
        }

    async def by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, RenewalRecord]:
        if not keys:
            return {}
        rows = await self._connection.execute(_RENEWALS_BY_KEY, {"ids": sorted(set(keys))})
        return {row.idempotency_key: renewal_from_row(row) for row in rows}

    async def with_card_numbers(
        self, renewal_ids: Sequence[str]
    ) -> dict[str, tuple[RenewalRecord, str, str]]:
        """Renewals with their card's MSISDN and ICCID, in one query."""
        if not renewal_ids:
            return {}
        rows = await self._connection.execute(
            _RENEWALS_WITH_CARD_NUMBERS, {"ids": sorted(set(renewal_ids))}
        )
        return {row.id: (renewal_from_row(row), row.card_msisdn, row.card_iccid) for row in rows}

    async def move_many(self, moves: Sequence[RenewalMove], *, at: dt.datetime) -> None:
        """Apply several moves (the state machine checks each) and record them in the timeline.
        The caller holds the renewals' row locks, so the status guard cannot miss."""
        if not moves:
            return
        if len({move.renewal.id for move in moves}) != len(moves):
            raise InvariantError("one renewal moved twice in one statement")
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        changes = []
        for move in moves:
            change = transition(move.renewal.status, move.to_status, at=at, reason=move.reason)
            changes.append((move.renewal.id, change))
            columns = tuple(sorted(move.values))
            groups.setdefault(columns, []).append(
                {
                    "renewal_id": move.renewal.id,
                    "from_status": move.renewal.status.value,
                    "status": change.to_status.value,
                    "updated_at": at,
                    **move.values,
                }
            )
        for columns, parameters in groups.items():
            changed = await update_rows(
                self._connection,
                t.renewals,
                parameters,
                match=(("id", "renewal_id"), ("status", "from_status")),
                columns=("status", "updated_at", *columns),
            )
            if changed != len(parameters):
                raise InvariantError("a renewal changed status under us while its row was locked")
        await self.add_events(changes)

    async def get(self, renewal_id: str, *, for_update: bool = False) -> RenewalRecord | None:
        query = select(t.renewals).where(t.renewals.c.id == renewal_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return None if row is None else renewal_from_row(row)

    async def by_idempotency_key(self, key: str) -> RenewalRecord | None:
        query = select(t.renewals).where(t.renewals.c.idempotency_key == key)
        row = (await self._connection.execute(query)).first()
        return None if row is None else renewal_from_row(row)

    async def move(
        self,
        renewal: RenewalRecord,
        to_status: RenewalStatus,
        *,
        at: dt.datetime,
        reason: str,
        **values: Unpack[RenewalChanges],
    ) -> None:
        """Move a renewal to ``to_status`` (the state machine checks the transition) and record
        it in the timeline; the status guard makes racing writers harmless."""
        change = transition(renewal.status, to_status, at=at, reason=reason)
        result = await self._connection.execute(
            update(t.renewals)
            .where(and_(t.renewals.c.id == renewal.id, t.renewals.c.status == renewal.status.value))
            .values(status=change.to_status.value, updated_at=change.at, **values)
        )
        if result.rowcount != 1:
            raise InvariantError(f"renewal {renewal.id} left {renewal.status.value} under us")
        await self.add_event(renewal.id, change)

    async def add_event(self, renewal_id: str, change: Transition) -> None:
        await self.add_events([(renewal_id, change)])

    async def add_events(self, changes: Sequence[tuple[str, Transition]]) -> None:
        if not changes:
            return
        await self._connection.execute(
            t.renewal_events.insert(),
            [
                {
                    "renewal_id": renewal_id,
                    "from_status": None if change.from_status is None else change.from_status.value,
                    "to_status": change.to_status.value,
                    "at": change.at,
                    "reason": change.reason,
                }
                for renewal_id, change in changes
            ],
        )

    async def timelines(self, renewal_ids: Sequence[str]) -> dict[str, list[Transition]]:
        if not renewal_ids:
            return {}
        rows = await self._connection.execute(_EVENTS_BY_RENEWAL, {"ids": sorted(set(renewal_ids))})
        found: dict[str, list[Transition]] = {}
        for r in rows:
            found.setdefault(r.renewal_id, []).append(
                Transition(
                    None if r.from_status is None else RenewalStatus(r.from_status),
                    RenewalStatus(r.to_status),
                    r.at,
                    r.reason,
                )
            )
        return found

    async def for_card(
        self, card_id: str, *, limit: int, before: tuple[dt.datetime, str] | None = None
    ) -> list[RenewalRecord]:
        """A card's renewals, newest first; ``before``: only those after this (created_at, id)
        in that order (a page's cursor)."""
        query = select(t.renewals).where(t.renewals.c.card_id == card_id)
        if before is not None:
            at, renewal_id = before
            query = query.where(
                or_(
                    t.renewals.c.created_at < at,
                    and_(t.renewals.c.created_at == at, t.renewals.c.id < renewal_id),
                )
            )
        rows = await self._connection.execute(
            query.order_by(t.renewals.c.created_at.desc(), t.renewals.c.id.desc()).limit(limit)
        )
        return [renewal_from_row(row) for row in rows]

    async def has_activating(self, card_id: str) -> bool:
        row = (
            await self._connection.execute(
                select(t.renewals.c.id)
                .where(
                    t.renewals.c.card_id == card_id,
                    t.renewals.c.status == RenewalStatus.ACTIVATING.value,
                )
                .limit(1)
            )
        ).first()
        return row is not None

    async def open_for_card(self, card_id: str, *, kind: str) -> RenewalRecord | None:
        """A renewal of this kind for this card that has not reached a terminal status."""
        row = (
            await self._connection.execute(
                select(t.renewals)
                .where(
                    t.renewals.c.card_id == card_id,
                    t.renewals.c.kind == kind,
                    t.renewals.c.status.not_in([s.value for s in TERMINAL_STATUSES]),
                )
                .limit(1)
            )
        ).first()
        return None if row is None else renewal_from_row(row)
