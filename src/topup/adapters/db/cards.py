"""Cards and their events: rows to ``Card`` and back. Never commits."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import many, update_rows
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InvariantError
from topup.domain.money import Money
from topup.domain.records import CardEvent
from topup.domain.renewal import RenewalStatus

# Batch statements, built once: building a statement costs more than running it from the cache.
_CARDS_BY_ID = select(t.cards).where(t.cards.c.id.in_(many())).order_by(t.cards.c.id)


_CARDS_BY_ID_LOCKED = _CARDS_BY_ID.with_for_update(key_share=True)


def card_from_row(row: Row[Any]) -> Card:
    m = row._mapping
    return Card(
        id=m["id"],
        msisdn=m["msisdn"],
        iccid=m["iccid"],
        kind=CardKind(m["kind"]),
        status=CardStatus(m["status"]),
        currency=m["currency"],
        credit=Money(int(m["credit_minor"]), m["currency"]),
        data_quota_mb=int(m["data_quota_mb"]),
        validity_end=m["validity_end"],
        bill_due=Money(int(m["bill_due_minor"]), m["currency"]),
        bill_due_date=m["bill_due_date"],
        holder_name=m["holder_name"],
        email=m["email"],
        version=int(m["version"]),
    )


def card_values(card: Card) -> dict[str, Any]:
    return {
        "id": card.id,
        "msisdn": card.msisdn,
        "iccid": card.iccid,
        "kind": card.kind.value,
        "status": card.status.value,
        "currency": card.currency,
        "credit_minor": card.credit.minor,
        "data_quota_mb": card.data_quota_mb,
        "validity_end": card.validity_end,
        "bill_due_minor": card.bill_due.minor,
        "bill_due_date": card.bill_due_date,
        "holder_name": card.holder_name,
        "email": card.email,
        "version": card.version,
    }


class CardRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, card: Card, *, at: dt.datetime) -> None:
        await self._connection.execute(
            t.cards.insert().values(**card_values(card), created_at=at, updated_at=at)
        )

    async def get(self, card_id: str, *, for_update: bool = False) -> Card | None:
        query = select(t.cards).where(t.cards.c.id == card_id)
        if for_update:
            # FOR NO KEY UPDATE: we never change a card's id, so renewals inserting rows that
            # reference this card (foreign-key KEY SHARE locks) need not wait for us.
            query = query.with_for_update(key_share=True)
        row = (await self._connection.execute(query)).first()
        return None if row is None else card_from_row(row)

    async def get_many(
        self, card_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, Card]:
        """Cards by id; locked in id order when ``for_update``, so that writers locking several
        cards at once always take them in the same order and cannot deadlock."""
        if not card_ids:
            return {}
        query = _CARDS_BY_ID_LOCKED if for_update else _CARDS_BY_ID
        rows = await self._connection.execute(query, {"ids": sorted(set(card_ids))})
        return {row.id: card_from_row(row) for row in rows}

    async def by_numbers(self, *, msisdns: Sequence[str], iccids: Sequence[str]) -> list[Card]:
        """The cards with any of these MSISDNs or ICCIDs, in one query."""
        if not msisdns and not iccids:
            return []
        query = select(t.cards).where(
            or_(
                t.cards.c.msisdn.in_(sorted(set(msisdns))), t.cards.c.iccid.in_(sorted(set(iccids)))
            )
        )
        return [card_from_row(row) for row in await self._connection.execute(query)]

    async def by_number(
        self, *, msisdn: str | None = None, iccid: str | None = None
    ) -> Card | None:
        if msisdn is not None:
            query = select(t.cards).where(t.cards.c.msisdn == msisdn)
        elif iccid is not None:
            query = select(t.cards).where(t.cards.c.iccid == iccid)
        else:
            raise InvariantError("a card is looked up by msisdn or iccid")
        row = (await self._connection.execute(query)).first()
        return None if row is None else card_from_row(row)

    async def save(self, card: Card, *, expected_version: int, at: dt.datetime) -> None:
        """Write a changed card; the version check makes a lost update impossible."""
        values = card_values(card)
        del values["id"]
        result = await self._connection.execute(
            update(t.cards)
            .where(and_(t.cards.c.id == card.id, t.cards.c.version == expected_version))
            .values(**values, updated_at=at)
        )
        if result.rowcount != 1:
            raise InvariantError(f"card {card.id} changed under us (version {expected_version})")

    async def save_many(self, changes: Sequence[tuple[Card, int]], *, at: dt.datetime) -> None:
        """Write changed cards, each ``(card, version it had when read)``. The caller holds their
        row locks (``get_many(for_update=True)``), so the version guard cannot miss."""
        if not changes:
            return
        parameters = []
        for card, expected_version in changes:
            values = card_values(card)
            values["card_id"] = values.pop("id")
            parameters.append({**values, "expected_version": expected_version, "updated_at": at})
        columns = tuple(key for key in parameters[0] if key not in ("card_id", "expected_version"))
        changed = await update_rows(
            self._connection,
            t.cards,
            parameters,
            match=(("id", "card_id"), ("version", "expected_version")),
            columns=columns,
        )
        if changed != len(parameters):
            raise InvariantError("a card changed under us while its row was locked")

    async def list_page(self, *, limit: int, offset: int = 0) -> list[Card]:
        rows = await self._connection.execute(
            select(t.cards).order_by(t.cards.c.msisdn).limit(limit).offset(offset)
        )
        return [card_from_row(row) for row in rows]

    async def due_for_lifecycle(
        self, *, now: dt.datetime, limit: int, grace_period_days: int
    ) -> list[str]:
        """Cards whose stored status is stale: prepaid active past validity or in grace past its
        end, postpaid past due date. A card in grace is not due until its grace ends: returning
        it earlier fills the batch with cards that do not move and starves those that do."""
        ids: list[str] = []
        for query in _due_queries(now, grace_period_days, t.cards.c.id):
            if len(ids) >= limit:
                break
            ids += [row[0] for row in await self._connection.execute(query.limit(limit - len(ids)))]
        return ids

    async def lock_due_for_lifecycle(
        self, *, now: dt.datetime, limit: int, grace_period_days: int
    ) -> list[Card]:
        """The due cards, locked FOR NO KEY UPDATE SKIP LOCKED (PostgreSQL; SQLite has one
        writer at a time): two workers take different cards. Each kind of due card is found by
        an index range (ix_cards_status_validity_end, ix_cards_status_bill_due_date), oldest
        first, so a batch never scans the cards that are not due."""
        cards: list[Card] = []
        for query in _due_queries(now, grace_period_days, t.cards):
            if len(cards) >= limit:
                break
            locked = query.limit(limit - len(cards)).with_for_update(
                skip_locked=True, key_share=True
            )
            cards += [card_from_row(row) for row in await self._connection.execute(locked)]
        return cards

    async def add_event(
        self, *, card_id: str, kind: str, at: dt.datetime, detail: dict[str, str | int]
    ) -> None:
        await self._connection.execute(
            t.card_events.insert().values(
                card_id=card_id, kind=kind, at=at, detail=json.dumps(detail, sort_keys=True)
            )
        )

    async def add_events(
        self, events: Sequence[tuple[str, str, dt.datetime, dict[str, str | int]]]
    ) -> None:
        if not events:
            return
        await self._connection.execute(
            t.card_events.insert(),
            [
                {
                    "card_id": card_id,
                    "kind": kind,
                    "at": at,
                    "detail": json.dumps(detail, sort_keys=True),
                }
                for card_id, kind, at, detail in events
            ],
        )

    async def events(self, card_id: str, *, limit: int) -> list[CardEvent]:
        rows = await self._connection.execute(
            select(t.card_events)
            .where(t.card_events.c.card_id == card_id)
            .order_by(t.card_events.c.at.desc(), t.card_events.c.id.desc())
            .limit(limit)
        )
        return [CardEvent(r.kind, r.at, json.loads(r.detail)) for r in rows]


def _due_queries(now: dt.datetime, grace_period_days: int, *columns: Any) -> list[Select[Any]]:
    """The cards due a lifecycle move, one query per index range: prepaid past validity,
    prepaid past grace (not while a paid renewal is on its way: it restores the card), postpaid
    with an overdue bill."""
    cards = t.cards.c
    grace_ended = now - dt.timedelta(days=grace_period_days)
    past_validity = select(*columns).where(
        cards.status == CardStatus.ACTIVE.value,
        cards.validity_end <= now,
        cards.kind == CardKind.PREPAID.value,
    )
    past_grace = select(*columns).where(
        cards.status == CardStatus.GRACE.value,
        cards.validity_end <= grace_ended,
        cards.kind == CardKind.PREPAID.value,
        cards.id.not_in(
            select(t.renewals.c.card_id).where(
                t.renewals.c.status == RenewalStatus.ACTIVATING.value
            )
        ),
    )
    overdue = select(*columns).where(
        cards.status == CardStatus.ACTIVE.value,
        cards.bill_due_minor > 0,
        cards.bill_due_date <= now,
        cards.kind == CardKind.POSTPAID.value,
    )
    return [
        past_validity.order_by(cards.validity_end),
        past_grace.order_by(cards.validity_end),
        overdue.order_by(cards.bill_due_date),
    ]
