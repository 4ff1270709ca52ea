"""Organisations (fleets): members, cards, what the fleet page lists, invoices. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, func, or_, select, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert
from topup.adapters.db.cards import card_from_row
from topup.domain.cards import Card
from topup.domain.errors import InvariantError
from topup.domain.fleets import (
    FleetFilter,
    Invoice,
    InvoicedRenewal,
    Member,
    MemberRole,
    Organisation,
)
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus

_UNPAID_OR_REFUNDED = (
    RenewalStatus.REFUNDED.value,
    RenewalStatus.DECLINED.value,
    RenewalStatus.CANCELLED.value,
)


def _organisation(row: Row[Any]) -> Organisation:
    m = row._mapping
    return Organisation(
        id=m["id"],
        name=m["name"],
        language=m["language"],
        created_at=m["created_at"],
        payment_card_id=m["payment_card_id"],
        payment_card_account_id=m["payment_card_account_id"],
    )


def _member(row: Row[Any]) -> Member:
    m = row._mapping
    try:
        role = MemberRole(m["role"])
    except ValueError:
        raise InvariantError(
            f"member {m['account_id']} has an unknown role {m['role']!r}"
        ) from None
    return Member(
        organisation_id=m["organisation_id"],
        account_id=m["account_id"],
        role=role,
        added_at=m["added_at"],
        email=m.get("email") or "",
    )


def _invoice(row: Row[Any]) -> Invoice:
    m = row._mapping
    currency = m["currency"]
    return Invoice(
        id=m["id"],
        organisation_id=m["organisation_id"],
        month=m["month"],
        sequence=int(m["sequence"]),
        number=m["number"],
        renewals_count=int(m["renewals_count"]),
        gross=Money(int(m["gross_minor"]), currency),
        net=Money(int(m["net_minor"]), currency),
        tax=Money(int(m["tax_minor"]), currency),
        created_at=m["created_at"],
    )


def _fleet_conditions(organisation_id: str, fleet_filter: FleetFilter) -> list[Any]:
    cards, owned = t.cards, t.organisation_cards
    conditions: list[Any] = [owned.c.organisation_id == organisation_id]
    if fleet_filter.statuses:
        conditions.append(cards.c.status.in_(fleet_filter.statuses))
    if fleet_filter.validity_before is not None:
        conditions.append(cards.c.validity_end < fleet_filter.validity_before)
    digits = "".join(character for character in fleet_filter.number_contains if character.isdigit())
    if digits:
        pattern = f"%{digits}%"
        conditions.append(or_(cards.c.msisdn.like(pattern), cards.c.iccid.like(pattern)))
    return conditions


def _paid_renewals_query(organisation_id: str, since: dt.datetime, until: dt.datetime) -> Any:
    """The ids of the renewals the organisation paid for in [since, until): its bulk renewals'
    lines, the auto top-ups charged to it, and the auto-renewal tries charged to it (its fleet
    policy's, or its payment card's;
    an attempt row names the organisation its current try is charged to, and that try's key is
    its renewal's idempotency key; earlier tries of the period hold no money)."""
    renewals, lines, runs, attempts = t.renewals, t.bulk_lines, t.bulk_runs, t.auto_renewal_attempts
    paid = (
        renewals.c.paid_at >= since,
        renewals.c.paid_at < until,
        renewals.c.status.not_in(_UNPAID_OR_REFUNDED),
    )
    bulk = (
        select(renewals.c.id)
        .select_from(
            renewals.join(lines, lines.c.renewal_id == renewals.c.id).join(
                runs, runs.c.id == lines.c.run_id
            )
        )
        .where(runs.c.organisation_id == organisation_id, *paid)
    )
    auto = (
        select(renewals.c.id)
        .select_from(attempts.join(renewals, renewals.c.idempotency_key == attempts.c.try_key))
        .where(
            attempts.c.paid_by_organisation_id == organisation_id,
            attempts.c.created_at < until,  # (by its index: a later attempt paid nothing then)
            *paid,
        )
    )
    top_ups = (
        select(renewals.c.id)
        .select_from(t.auto_top_ups.join(renewals, renewals.c.id == t.auto_top_ups.c.renewal_id))
        .where(
            t.auto_top_ups.c.paid_by_organisation_id == organisation_id,
            t.auto_top_ups.c.at < until,  # (by its index: a later top-up paid nothing then)
            *paid,
        )
    )
    return union(bulk, auto, top_ups)


class OrganisationRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, organisation: Organisation) -> None:
        await self._connection.execute(
            t.organisations.insert().values(
                id=organisation.id,
                name=organisation.name,
                language=organisation.language,
                payment_card_id=organisation.payment_card_id,
                payment_card_account_id=organisation.payment_card_account_id,
                created_at=organisation.created_at,
            )
        )

    async def get(self, organisation_id: str) -> Organisation | None:
        row = (
            await self._connection.execute(
                select(t.organisations).where(t.organisations.c.id == organisation_id)
            )
        ).first()
        return None if row is None else _organisation(row)

    async def set_payment_card(
        self, organisation_id: str, *, saved_id: str | None, account_id: str | None
    ) -> None:
        await self._connection.execute(
            update(t.organisations)
            .where(t.organisations.c.id == organisation_id)
            .values(payment_card_id=saved_id, payment_card_account_id=account_id)
        )

    async def put_member(self, member: Member) -> None:
        table = t.organisation_members
        statement = dialect_insert(self._connection, table).values(
            organisation_id=member.organisation_id,
            account_id=member.account_id,
            role=member.role.value,
            added_at=member.added_at,
        )
        await self._connection.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.organisation_id, table.c.account_id],
                set_={"role": statement.excluded.role},
            )
        )

    def _members_query(self) -> Any:
        members, accounts = t.organisation_members, t.accounts
        return select(*members.c, accounts.c.email).select_from(
            members.join(accounts, accounts.c.id == members.c.account_id)
        )

    async def member(self, organisation_id: str, account_id: str) -> Member | None:
        members = t.organisation_members
        row = (
            await self._connection.execute(
                self._members_query().where(
                    members.c.organisation_id == organisation_id,
                    members.c.account_id == account_id,
                )
            )
        ).first()
        return None if row is None else _member(row)

    async def members(self, organisation_id: str, *, limit: int) -> list[Member]:
        members = t.organisation_members
        rows = await self._connection.execute(
            self._members_query()
            .where(members.c.organisation_id == organisation_id)
            .order_by(members.c.added_at, members.c.account_id)
            .limit(limit)
        )
        return [_member(row) for row in rows]

    async def memberships(
        self, account_id: str, *, limit: int
    ) -> list[tuple[Organisation, Member]]:
        members, organisations = t.organisation_members, t.organisations
        rows = await self._connection.execute(
            select(organisations, members.c.role, members.c.added_at)
            .select_from(
                organisations.join(members, members.c.organisation_id == organisations.c.id)
            )
            .where(members.c.account_id == account_id)
            .order_by(organisations.c.created_at, organisations.c.id)
            .limit(limit)
        )
        found = []
        for row in rows:
            m = row._mapping
            organisation = _organisation(row)
            member = Member(organisation.id, account_id, MemberRole(m["role"]), m["added_at"])
            found.append((organisation, member))
        return found

    async def owners_of_cards(self, card_ids: Sequence[str]) -> dict[str, str]:
        if not card_ids:
            return {}
        owned = t.organisation_cards
        rows = await self._connection.execute(
            select(owned.c.card_id, owned.c.organisation_id).where(owned.c.card_id.in_(card_ids))
        )
        return {row[0]: row[1] for row in rows}

    async def add_cards(
        self, organisation_id: str, card_ids: Sequence[str], *, at: dt.datetime
    ) -> int:
        if not card_ids:
            return 0
        table = t.organisation_cards
        statement = (
            dialect_insert(self._connection, table)
            .values(
                [
                    {"card_id": card_id, "organisation_id": organisation_id, "added_at": at}
                    for card_id in sorted(set(card_ids))
                ]
            )
            .on_conflict_do_nothing(index_elements=[table.c.card_id])
        )
        result = await self._connection.execute(statement)
        return int(result.rowcount)

    async def remove_card(self, organisation_id: str, card_id: str) -> bool:
        owned = t.organisation_cards
        result = await self._connection.execute(
            delete(owned).where(
                owned.c.organisation_id == organisation_id, owned.c.card_id == card_id
            )
        )
        return bool(result.rowcount)

    async def fleet_cards(
        self, organisation_id: str, fleet_filter: FleetFilter, *, limit: int, offset: int
    ) -> list[Card]:
        cards, owned = t.cards, t.organisation_cards
        rows = await self._connection.execute(
            select(cards)
            .select_from(cards.join(owned, owned.c.card_id == cards.c.id))
            .where(*_fleet_conditions(organisation_id, fleet_filter))
            .order_by(cards.c.validity_end.is_(None), cards.c.validity_end, cards.c.msisdn)
            .limit(limit)
            .offset(offset)
        )
        return [card_from_row(row) for row in rows]

    async def fleet_cards_after(
        self, organisation_id: str, *, after_card_id: str | None, limit: int
    ) -> list[Card]:
        cards, owned = t.cards, t.organisation_cards
        query = (
            select(cards)
            .select_from(cards.join(owned, owned.c.card_id == cards.c.id))
            .where(owned.c.organisation_id == organisation_id)
        )
        if after_card_id is not None:
            query = query.where(owned.c.card_id > after_card_id)
        rows = await self._connection.execute(query.order_by(owned.c.card_id).limit(limit))
        return [card_from_row(row) for row in rows]

    async def count_cards(self, organisation_id: str, fleet_filter: FleetFilter) -> int:
        cards, owned = t.cards, t.organisation_cards
        result = await self._connection.execute(
            select(func.count())
            .select_from(cards.join(owned, owned.c.card_id == cards.c.id))
            .where(*_fleet_conditions(organisation_id, fleet_filter))
        )
        return int(result.scalar_one())

    async def card_counts_by_status(self, organisation_id: str) -> dict[str, int]:
        cards, owned = t.cards, t.organisation_cards
        rows = await self._connection.execute(
            select(cards.c.status, func.count())
            .select_from(cards.join(owned, owned.c.card_id == cards.c.id))
            .where(owned.c.organisation_id == organisation_id)
            .group_by(cards.c.status)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def paid_renewals(
        self, organisation_id: str, *, since: dt.datetime, until: dt.datetime, limit: int
    ) -> list[InvoicedRenewal]:
        renewals, cards = t.renewals, t.cards
        ids = _paid_renewals_query(organisation_id, since, until).subquery()
        rows = await self._connection.execute(
            select(
                renewals.c.id,
                cards.c.msisdn,
                renewals.c.plan_code,
                renewals.c.amount_minor,
                renewals.c.currency,
                renewals.c.paid_at,
                renewals.c.receipt_number,
            )
            .select_from(renewals.join(cards, cards.c.id == renewals.c.card_id))
            .where(renewals.c.id.in_(select(ids.c.id)))
            .order_by(renewals.c.paid_at, renewals.c.id)
            .limit(limit)
        )
        return [
            InvoicedRenewal(
                renewal_id=row[0],
                msisdn=row[1],
                plan_code=row[2],
                amount=Money(int(row[3]), row[4]),
                paid_at=row[5],
                receipt_number=row[6],
            )
            for row in rows
        ]

    async def spend(self, organisation_id: str, *, since: dt.datetime, until: dt.datetime) -> int:
        renewals = t.renewals
        ids = _paid_renewals_query(organisation_id, since, until).subquery()
        result = await self._connection.execute(
            select(func.coalesce(func.sum(renewals.c.amount_minor), 0)).where(
                renewals.c.id.in_(select(ids.c.id))
            )
        )
        return int(result.scalar_one())

    async def latest_invoice(self, organisation_id: str, month: str) -> Invoice | None:
        invoices = t.invoices
        row = (
            await self._connection.execute(
                select(invoices)
                .where(invoices.c.organisation_id == organisation_id, invoices.c.month == month)
                .order_by(invoices.c.sequence.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else _invoice(row)

    async def add_invoice(self, invoice: Invoice) -> bool:
        statement = (
            dialect_insert(self._connection, t.invoices)
            .values(
                id=invoice.id,
                organisation_id=invoice.organisation_id,
                month=invoice.month,
                sequence=invoice.sequence,
                number=invoice.number,
                renewals_count=invoice.renewals_count,
                gross_minor=invoice.gross.minor,
                net_minor=invoice.net.minor,
                tax_minor=invoice.tax.minor,
                currency=invoice.gross.currency,
                created_at=invoice.created_at,
            )
            .on_conflict_do_nothing()
        )
        result = await self._connection.execute(statement)
        return int(result.rowcount) == 1

    async def invoices(self, organisation_id: str, *, limit: int) -> list[Invoice]:
        invoices = t.invoices
        rows = await self._connection.execute(
            select(invoices)
            .where(invoices.c.organisation_id == organisation_id)
            .order_by(invoices.c.month.desc(), invoices.c.sequence.desc())
            .limit(limit)
        )
        return [_invoice(row) for row in rows]
