"""Repositories: translate between rows and domain objects. They never commit."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Table, and_, bindparam, case, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InvariantError
from topup.domain.ledger import Entry, EntryKind, Posting, check_balanced
from topup.domain.money import Money
from topup.domain.plans import Plan, PlanKind
from topup.domain.records import JobRecord, JobRetry, PaymentRecord, RenewalMove, RenewalRecord
from topup.domain.renewal import TERMINAL_STATUSES, RenewalStatus, Transition, transition


def _insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _claim(
    connection: AsyncConnection,
    table: Table,
    due: Any,
    *,
    order_by: Any,
    limit: int,
    values: dict[str, Any],
) -> list[Row[Any]]:
    """Lease due rows to this worker: pick them with FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite
    has one writer at a time anyway), then move their next time past the lease, in one
    transaction. Other workers skip them until the lease ends."""
    picked = (
        select(table.c.id)
        .where(due)
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [row[0] for row in await connection.execute(picked)]
    if not ids:
        return []
    result = await connection.execute(
        update(table).where(table.c.id.in_(ids)).values(**values).returning(*table.c)
    )
    return list(result)


def _many(name: str = "ids") -> Any:
    """A bind parameter taking a list (``IN (...)``), so one statement serves every batch size."""
    return bindparam(name, expanding=True)


# Batch statements, built once: building a statement costs more than running it from the cache.
_CARDS_BY_ID = select(t.cards).where(t.cards.c.id.in_(_many())).order_by(t.cards.c.id)
_CARDS_BY_ID_LOCKED = _CARDS_BY_ID.with_for_update(key_share=True)
_CARDS_BY_NUMBER = select(t.cards).where(
    or_(t.cards.c.msisdn.in_(_many("msisdns")), t.cards.c.iccid.in_(_many("iccids")))
)
_PLANS_BY_CODE = select(t.plans).where(t.plans.c.code.in_(_many()))
_RENEWALS_BY_ID = select(t.renewals).where(t.renewals.c.id.in_(_many())).order_by(t.renewals.c.id)
_RENEWALS_BY_ID_LOCKED = _RENEWALS_BY_ID.with_for_update()
_RENEWALS_BY_KEY = select(t.renewals).where(t.renewals.c.idempotency_key.in_(_many()))
_RENEWALS_WITH_CARD_NUMBERS = (
    select(
        t.renewals,
        t.cards.c.msisdn.label("card_msisdn"),
        t.cards.c.iccid.label("card_iccid"),
    )
    .join(t.cards, t.cards.c.id == t.renewals.c.card_id)
    .where(t.renewals.c.id.in_(_many()))
)
# A renewal's columns, then its payment's (by position: cheaper than by label), then the MSISDN.
_RENEWAL_WIDTH = len(t.renewals.c)
_PAYMENT_COLUMNS = [column.name for column in t.payments.c]
_RENEWALS_WITH_PAYMENTS = (
    select(
        t.renewals,
        *(column.label(f"payment_{column.name}") for column in t.payments.c),
        t.cards.c.msisdn.label("card_msisdn"),
    )
    .join(t.payments, t.payments.c.renewal_id == t.renewals.c.id)
    .join(t.cards, t.cards.c.id == t.renewals.c.card_id)
    .where(t.renewals.c.id.in_(_many()))
    .order_by(t.renewals.c.id)
)
_RENEWALS_WITH_PAYMENTS_LOCKED = _RENEWALS_WITH_PAYMENTS.with_for_update(
    of=[t.renewals, t.payments]
)
_EVENTS_BY_RENEWAL = (
    select(t.renewal_events)
    .where(t.renewal_events.c.renewal_id.in_(_many()))
    .order_by(t.renewal_events.c.id)
)
_PAYMENTS_BY_RENEWAL = (
    select(t.payments).where(t.payments.c.renewal_id.in_(_many())).order_by(t.payments.c.renewal_id)
)
_PAYMENTS_BY_RENEWAL_LOCKED = _PAYMENTS_BY_RENEWAL.with_for_update()
_PAYMENTS_BY_ID = select(t.payments).where(t.payments.c.id.in_(_many()))
_LOCK_WALLET_ACCOUNTS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(account, 0)) FROM "
    "(SELECT account FROM unnest(CAST(:fingerprints AS text[])) AS account ORDER BY account) "
    "AS sorted_accounts"
)


Match = tuple[tuple[str, str], ...]  # (column, parameter name) pairs a row must match


async def _update_rows(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    match: Match,
    columns: tuple[str, ...],
) -> int:
    """UPDATE ``table`` SET ``columns`` for each row (a dict of parameters) that matches; returns
    how many rows changed. PostgreSQL gets one statement over arrays, however many rows;
    SQLite (in-process, no round trips) an executemany."""
    if not rows:
        return 0
    if connection.dialect.name != "postgresql":
        result = await connection.execute(_update_statement(table, match, columns), list(rows))
        return int(result.rowcount)
    arrays: dict[str, list[Any]] = {}
    dialect = connection.dialect
    for column, parameter in (*match, *((column, column) for column in columns)):
        column_type = table.c[column].type
        values = [row[parameter] for row in rows]
        if isinstance(column_type, t.UtcDateTime):  # aware UTC, as the type would bind them
            values = [column_type.process_bind_param(value, dialect) for value in values]
        arrays[parameter] = values
    result = await connection.execute(
        _unnest_update(connection.dialect, table, match, columns), arrays
    )
    return int(result.rowcount)


@functools.lru_cache(maxsize=64)
def _update_statement(table: Table, match: Match, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(*(table.c[column] == bindparam(parameter) for column, parameter in match))
        .values({column: bindparam(column) for column in columns})
    )


@functools.lru_cache(maxsize=64)
def _unnest_update(dialect: Dialect, table: Table, match: Match, columns: tuple[str, ...]) -> Any:
    """UPDATE t SET c = v.c, ... FROM unnest(<one array per parameter>) AS v(...) WHERE ..."""
    names = [parameter for _, parameter in match] + list(columns)
    sql_types = {
        parameter: table.c[column].type.compile(dialect=dialect) for column, parameter in match
    }
    sql_types.update({column: table.c[column].type.compile(dialect=dialect) for column in columns})
    arrays = ", ".join(f"CAST(:{name} AS {sql_types[name]}[])" for name in names)
    assignments = ", ".join(f"{column} = v.{column}" for column in columns)
    conditions = " AND ".join(
        f"{table.name}.{column} = v.{parameter}" for column, parameter in match
    )
    return text(
        f"UPDATE {table.name} SET {assignments} "  # noqa: S608 - names from our own tables
        f"FROM unnest({arrays}) AS v({', '.join(names)}) WHERE {conditions}"
    )


async def _update_many(
    connection: AsyncConnection, table: Table, changes: Sequence[tuple[Any, dict[str, Any]]]
) -> None:
    """Update rows by id, one statement per set of changed columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row_id, values in changes:
        columns = tuple(sorted(values))
        groups.setdefault(columns, []).append({"row_id": row_id, **values})
    for columns, parameters in groups.items():
        await _update_rows(
            connection, table, parameters, match=(("id", "row_id"),), columns=columns
        )


@functools.lru_cache(maxsize=4)
def _balance_upsert(dialect_name: str) -> Any:
    """INSERT a balance change, or add it to the balance already there; for executemany, which
    runs the rows in the order given."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(t.account_balances)
    return statement.on_conflict_do_update(
        index_elements=[t.account_balances.c.account, t.account_balances.c.currency],
        set_={
            "balance_minor": t.account_balances.c.balance_minor + statement.excluded.balance_minor
        },
    )


# --- cards ------------------------------------------------------------------------------------


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
        changed = await _update_rows(
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
        grace_ended = now - dt.timedelta(days=grace_period_days)
        prepaid = select(t.cards.c.id).where(
            t.cards.c.kind == CardKind.PREPAID.value,
            or_(
                and_(t.cards.c.status == CardStatus.ACTIVE.value, t.cards.c.validity_end <= now),
                and_(
                    t.cards.c.status == CardStatus.GRACE.value,
                    t.cards.c.validity_end <= grace_ended,
                    # A paid renewal on its way restores the card: do not expire it meanwhile.
                    t.cards.c.id.not_in(
                        select(t.renewals.c.card_id).where(
                            t.renewals.c.status == RenewalStatus.ACTIVATING.value
                        )
                    ),
                ),
            ),
        )
        postpaid = select(t.cards.c.id).where(
            t.cards.c.kind == CardKind.POSTPAID.value,
            t.cards.c.status == CardStatus.ACTIVE.value,
            t.cards.c.bill_due_minor > 0,
            t.cards.c.bill_due_date <= now,
        )
        ids = [row[0] for row in await self._connection.execute(prepaid.limit(limit))]
        ids += [row[0] for row in await self._connection.execute(postpaid.limit(limit))]
        return ids[:limit]

    async def add_event(
        self, *, card_id: str, kind: str, at: dt.datetime, detail: dict[str, Any]
    ) -> None:
        await self._connection.execute(
            t.card_events.insert().values(
                card_id=card_id, kind=kind, at=at, detail=json.dumps(detail, sort_keys=True)
            )
        )

    async def events(self, card_id: str, *, limit: int) -> list[dict[str, Any]]:
        rows = await self._connection.execute(
            select(t.card_events)
            .where(t.card_events.c.card_id == card_id)
            .order_by(t.card_events.c.at.desc(), t.card_events.c.id.desc())
            .limit(limit)
        )
        return [{"kind": r.kind, "at": r.at, "detail": json.loads(r.detail)} for r in rows]


# --- plans ------------------------------------------------------------------------------------


def plan_from_row(row: Row[Any]) -> Plan:
    m = row._mapping
    return Plan(
        code=m["code"],
        names=dict(m["names"]),
        kind=PlanKind(m["kind"]),
        price=Money(int(m["price_minor"]), m["currency"]),
        data_quota_mb=int(m["data_quota_mb"]),
        validity_days=int(m["validity_days"]),
        card_kinds=frozenset(CardKind(kind) for kind in m["card_kinds"]),
        channels=frozenset(m["channels"]),
        active_from=m["active_from"],
        active_until=m["active_until"],
    )


class PlanRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def upsert(self, plan: Plan) -> None:
        values = {
            "code": plan.code,
            "names": plan.names,
            "kind": plan.kind.value,
            "price_minor": plan.price.minor,
            "currency": plan.price.currency,
            "data_quota_mb": plan.data_quota_mb,
            "validity_days": plan.validity_days,
            "card_kinds": sorted(kind.value for kind in plan.card_kinds),
            "channels": sorted(plan.channels),
            "active_from": plan.active_from,
            "active_until": plan.active_until,
        }
        statement = _insert(self._connection, t.plans).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[t.plans.c.code],
            set_={key: value for key, value in values.items() if key != "code"},
        )
        await self._connection.execute(statement)

    async def get(self, code: str) -> Plan | None:
        row = (
            await self._connection.execute(select(t.plans).where(t.plans.c.code == code))
        ).first()
        return None if row is None else plan_from_row(row)

    async def get_many(self, codes: Sequence[str]) -> dict[str, Plan]:
        if not codes:
            return {}
        rows = await self._connection.execute(_PLANS_BY_CODE, {"ids": sorted(set(codes))})
        return {row.code: plan_from_row(row) for row in rows}

    async def list_all(self, *, limit: int) -> list[Plan]:
        rows = await self._connection.execute(select(t.plans).order_by(t.plans.c.code).limit(limit))
        return [plan_from_row(row) for row in rows]


# --- renewals and payments --------------------------------------------------------------------


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
        status=m["status"],
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
    )


def _unprefixed(row: Row[Any], prefix: str) -> dict[str, Any]:
    return {
        key[len(prefix) :]: value for key, value in row._mapping.items() if key.startswith(prefix)
    }


class RenewalRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert renewals; one whose idempotency key another transaction took first is left
        out. Returns the ids inserted."""
        if not rows:
            return set()
        statement = (
            _insert(self._connection, t.renewals)
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
            changed = await _update_rows(
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
        **values: Any,
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


class PaymentRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, values: dict[str, Any]) -> None:
        await self.add_many([values])

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self._connection.execute(t.payments.insert(), list(rows))

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

    async def update_many(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Several payments' changes, each ``(payment id, values)``."""
        await _update_many(self._connection, t.payments, changes)

    async def for_renewal(
        self, renewal_id: str, *, for_update: bool = False
    ) -> PaymentRecord | None:
        query = select(t.payments).where(t.payments.c.renewal_id == renewal_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return None if row is None else payment_from_row(row)

    async def update(self, payment_id: str, **values: Any) -> None:
        await self._connection.execute(
            update(t.payments).where(t.payments.c.id == payment_id).values(**values)
        )

    async def claim_due_checks(
        self, *, statuses: Sequence[str], now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[PaymentRecord]:
        """Take payments whose outcome must be asked for; other workers skip them until the lease ends."""
        rows = await _claim(
            self._connection,
            t.payments,
            and_(t.payments.c.status.in_(list(statuses)), t.payments.c.next_check_at <= now),
            order_by=t.payments.c.next_check_at,
            limit=limit,
            values={
                "next_check_at": lease_until,
                "check_attempts": t.payments.c.check_attempts + 1,
                "updated_at": now,
            },
        )
        return [payment_from_row(row) for row in rows]


# --- ledger -----------------------------------------------------------------------------------


class LedgerRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._balance_changes: dict[tuple[str, str], int] = {}

    async def record(self, entry: Entry, *, at: dt.datetime) -> int:
        return (await self.record_many([entry], at=at))[0]

    async def record_many(self, entries: Sequence[Entry], *, at: dt.datetime) -> list[int]:
        """Append balanced entries; returns their ids in order. Their balance changes are applied
        by ``apply_balance_changes`` when the unit of work commits, so the balance rows (shared by
        many renewals) stay locked only for the last statement of the transaction."""
        if not entries:
            return []
        for entry in entries:
            check_balanced(entry.postings)
        result = await self._connection.execute(
            t.ledger_entries.insert().returning(
                t.ledger_entries.c.id, sort_by_parameter_order=True
            ),
            [
                {
                    "kind": entry.kind.value,
                    "renewal_id": entry.renewal_id,
                    "card_id": entry.card_id,
                    "memo": entry.memo,
                    "created_at": at,
                }
                for entry in entries
            ],
        )
        entry_ids = [int(row[0]) for row in result]
        if len(entry_ids) != len(entries):
            raise InvariantError("the database did not return an id for every ledger entry")
        await self._connection.execute(
            t.ledger_postings.insert(),
            [
                {
                    "entry_id": entry_id,
                    "account": posting.account,
                    "currency": posting.amount.currency,
                    "amount_minor": posting.amount.minor,
                }
                for entry_id, entry in zip(entry_ids, entries, strict=True)
                for posting in entry.postings
            ],
        )
        for entry in entries:
            for posting in entry.postings:
                key = (posting.account, posting.amount.currency)
                change = self._balance_changes.get(key, 0) + posting.amount.minor
                self._balance_changes[key] = change
        return entry_ids

    async def apply_balance_changes(self) -> None:
        """Move the materialised balances in one statement, rows in sorted order so that
        concurrent writers lock them in the same order and cannot deadlock."""
        if not self._balance_changes:
            return
        rows = [
            {"account": account, "currency": currency, "balance_minor": change}
            for (account, currency), change in sorted(self._balance_changes.items())
        ]
        self._balance_changes = {}
        await self._connection.execute(_balance_upsert(self._connection.dialect.name), rows)

    def discard_balance_changes(self) -> None:
        self._balance_changes = {}

    async def balance(self, account: str, currency: str) -> int:
        row = (
            await self._connection.execute(
                select(t.account_balances.c.balance_minor).where(
                    t.account_balances.c.account == account,
                    t.account_balances.c.currency == currency,
                )
            )
        ).first()
        return 0 if row is None else int(row[0])

    async def entries_for_card(
        self, card_id: str, *, limit: int
    ) -> list[tuple[int, Entry, dt.datetime]]:
        entry_rows = list(
            await self._connection.execute(
                select(t.ledger_entries)
                .where(t.ledger_entries.c.card_id == card_id)
                .order_by(t.ledger_entries.c.id.desc())
                .limit(limit)
            )
        )
        if not entry_rows:
            return []
        posting_rows = await self._connection.execute(
            select(t.ledger_postings)
            .where(t.ledger_postings.c.entry_id.in_([r.id for r in entry_rows]))
            .order_by(t.ledger_postings.c.id)
        )
        postings: dict[int, list[Posting]] = {}
        for p in posting_rows:
            postings.setdefault(int(p.entry_id), []).append(
                Posting(p.account, Money(int(p.amount_minor), p.currency))
            )
        return [
            (
                int(r.id),
                Entry(
                    EntryKind(r.kind),
                    tuple(postings.get(int(r.id), [])),
                    memo=r.memo,
                    renewal_id=r.renewal_id,
                    card_id=r.card_id,
                ),
                r.created_at,
            )
            for r in entry_rows
        ]


# --- webhooks -------------------------------------------------------------------------------


class WebhookRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def first_times(
        self, events: Sequence[tuple[str, str, str]], *, at: dt.datetime
    ) -> set[tuple[str, str]]:
        """Remember gateways' events, each ``(gateway, event id, payment id)``; returns the
        ``(gateway, event id)`` pairs seen for the first time (not a repeat or a replay)."""
        if not events:
            return set()
        w = t.webhook_events
        statement = (
            _insert(self._connection, w)
            .on_conflict_do_nothing(index_elements=[w.c.gateway, w.c.event_id])
            .returning(w.c.gateway, w.c.event_id)
        )
        rows = await self._connection.execute(
            statement,
            [
                {
                    "gateway": gateway,
                    "event_id": event_id,
                    "payment_id": payment_id,
                    "received_at": at,
                }
                for gateway, event_id, payment_id in events
            ],
        )
        return {(row[0], row[1]) for row in rows}


# --- payment instruments: wrong payment passwords and locks -----------------------------------


class InstrumentLockRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def locked(
        self, fingerprints: Sequence[str], *, now: dt.datetime
    ) -> dict[str, dt.datetime]:
        """The instruments among these that are locked at ``now``, with when each lock ends."""
        if not fingerprints:
            return {}
        locks = t.instrument_locks
        rows = await self._connection.execute(
            select(locks.c.instrument_fingerprint, locks.c.locked_until).where(
                locks.c.instrument_fingerprint.in_(sorted(set(fingerprints))),
                locks.c.locked_until > now,
            )
        )
        return {row[0]: row[1] for row in rows}

    async def count_wrong_answer(
        self, fingerprint: str, *, now: dt.datetime, window_start: dt.datetime
    ) -> int:
        """Add one wrong answer; returns the wrong answers since ``window_start``, this one
        included (older ones are forgotten). Concurrent wrong answers are all counted."""
        locks = t.instrument_locks
        statement = _insert(self._connection, locks).values(
            instrument_fingerprint=fingerprint,
            failed_attempts=1,
            first_failed_at=now,
            locked_until=None,
            updated_at=now,
        )
        stale = locks.c.first_failed_at < window_start
        statement = statement.on_conflict_do_update(
            index_elements=[locks.c.instrument_fingerprint],
            set_={
                "failed_attempts": case((stale, 1), else_=locks.c.failed_attempts + 1),
                "first_failed_at": case((stale, now), else_=locks.c.first_failed_at),
                "updated_at": now,
            },
        ).returning(locks.c.failed_attempts)
        return int((await self._connection.execute(statement)).scalar_one())

    async def lock(self, fingerprint: str, *, until: dt.datetime, now: dt.datetime) -> None:
        locks = t.instrument_locks
        await self._connection.execute(
            update(locks)
            .where(locks.c.instrument_fingerprint == fingerprint)
            .values(locked_until=until, updated_at=now)
        )

    async def forget(self, fingerprint: str) -> None:
        """A right answer: the wrong ones before it no longer count."""
        locks = t.instrument_locks
        await self._connection.execute(
            locks.delete().where(locks.c.instrument_fingerprint == fingerprint)
        )


# --- jobs (transactional outbox) ----------------------------------------------------------------


def job_from_row(row: Row[Any]) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=int(m["id"]),
        kind=m["kind"],
        renewal_id=m["renewal_id"],
        status=m["status"],
        attempts=int(m["attempts"]),
        claims=int(m["claims"]),
        next_attempt_at=m["next_attempt_at"],
        first_requested_at=m["first_requested_at"],
        last_error=m["last_error"],
    )


_RETRY_JOB = (
    update(t.jobs)
    .where(t.jobs.c.id == bindparam("job_id"), t.jobs.c.status == "queued")
    .values(
        next_attempt_at=bindparam("next_attempt_at"),
        attempts=t.jobs.c.attempts + bindparam("attempts_added"),
        last_error=bindparam("last_error"),
        updated_at=bindparam("updated_at"),
    )
)


class JobRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def enqueue(self, *, kind: str, renewal_id: str, at: dt.datetime) -> None:
        await self.enqueue_many(kind=kind, renewal_ids=[renewal_id], at=at)

    async def enqueue_many(self, *, kind: str, renewal_ids: Sequence[str], at: dt.datetime) -> None:
        if not renewal_ids:
            return
        await self._connection.execute(
            t.jobs.insert(),
            [
                {
                    "kind": kind,
                    "renewal_id": renewal_id,
                    "status": "queued",
                    "attempts": 0,
                    "claims": 0,
                    "next_attempt_at": at,
                    "first_requested_at": at,
                    "created_at": at,
                    "updated_at": at,
                }
                for renewal_id in renewal_ids
            ],
        )

    async def claim(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[JobRecord]:
        """Take due jobs. A claimed job is hidden until its lease ends; a worker that dies simply
        lets the lease run out and the job is claimed again."""
        rows = await _claim(
            self._connection,
            t.jobs,
            and_(t.jobs.c.status == "queued", t.jobs.c.next_attempt_at <= now),
            order_by=t.jobs.c.next_attempt_at,
            limit=limit,
            values={
                "next_attempt_at": lease_until,
                "claims": t.jobs.c.claims + 1,
                "updated_at": now,
            },
        )
        return sorted((job_from_row(row) for row in rows), key=lambda job: job.id)

    async def finish(
        self, job: JobRecord, *, status: str, at: dt.datetime, error: str | None = None
    ) -> bool:
        """Mark a queued job done or failed; False if another worker already did."""
        result = await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job.id, t.jobs.c.status == "queued")
            .values(status=status, updated_at=at, last_error=error)
        )
        return result.rowcount == 1

    async def finish_many(
        self, job_ids: Sequence[int], *, status: str, at: dt.datetime, error: str | None = None
    ) -> set[int]:
        """Mark queued jobs done or failed; returns the ids this call finished (another worker
        may have finished some first)."""
        if not job_ids:
            return set()
        result = await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id.in_(sorted(set(job_ids))), t.jobs.c.status == "queued")
            .values(status=status, updated_at=at, last_error=error)
            .returning(t.jobs.c.id)
        )
        return {int(row[0]) for row in result}

    async def mark_failed(self, failures: Sequence[tuple[int, str]], *, at: dt.datetime) -> None:
        """Jobs this transaction finished that turned out to fail, each ``(job id, why)``."""
        await _update_many(
            self._connection,
            t.jobs,
            [
                (job_id, {"status": "failed", "last_error": why, "updated_at": at})
                for job_id, why in failures
            ],
        )

    async def retry_later(
        self,
        job: JobRecord,
        *,
        at: dt.datetime,
        next_attempt_at: dt.datetime,
        failed: bool,
        error: str | None,
    ) -> None:
        await self.retry_many([JobRetry(job.id, next_attempt_at, failed, error)], at=at)

    async def retry_many(self, retries: Sequence[JobRetry], *, at: dt.datetime) -> None:
        """Put queued jobs back for a later attempt (a failed attempt counts towards the limit)."""
        if not retries:
            return
        await self._connection.execute(
            _RETRY_JOB,
            [
                {
                    "job_id": retry.job_id,
                    "next_attempt_at": retry.next_attempt_at,
                    "attempts_added": 1 if retry.failed else 0,
                    "last_error": retry.error,
                    "updated_at": at,
                }
                for retry in retries
            ],
        )

    async def for_renewal(self, renewal_id: str) -> list[JobRecord]:
        rows = await self._connection.execute(
            select(t.jobs).where(t.jobs.c.renewal_id == renewal_id).order_by(t.jobs.c.id)
        )
        return [job_from_row(row) for row in rows]
