"""Usage records, cards' usage states and signed deliveries. Never commits.

Records go in set-based: on PostgreSQL a small batch by one ``INSERT ... SELECT FROM
unnest(...) ON CONFLICT (record_id) DO NOTHING RETURNING``, a large one by COPY (see
``COPY_RECORDS_MIN``); either way the primary key decides which records are new, even against a
concurrent import of the same file. On SQLite (one writer at a time) the ids already there are
read, then the rest inserted with one executemany.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import ARRAY, String, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert, driver_connection, many
from topup.adapters.db.cards import CardRepository
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InvariantError
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus
from topup.domain.usage import InsertedUsage, NetworkChange, UsageRecord, UsageState

SQLITE_IDS_PER_QUERY_MAX = 10_000  # well under SQLite's 32,766 bound parameters
BACKSLASH, ESCAPED = "\\", "\\\\"  # COPY's text format escapes a backslash by another

# New records in, summed per card out: one statement per batch whatever its size.
_INSERT_NEW_RECORDS = text(
    "WITH new AS (INSERT INTO usage_records "
    "(record_id, card_id, used_at, data_used_mb, counted, received_at) "
    "SELECT v.record_id, v.card_id, v.used_at, v.data_used_mb, v.counted, v.received_at "
    "FROM unnest(CAST(:record_ids AS varchar[]), CAST(:card_ids AS varchar[]), "
    "CAST(:used_ats AS timestamptz[]), CAST(:data_used AS bigint[]), CAST(:counted AS boolean[]), "
    "CAST(:received_ats AS timestamptz[])) "
    "AS v(record_id, card_id, used_at, data_used_mb, counted, received_at) "
    "ON CONFLICT (record_id) DO NOTHING RETURNING card_id, data_used_mb, counted) "
    "SELECT card_id, count(*), count(*) FILTER (WHERE NOT counted), "
    "coalesce(sum(data_used_mb) FILTER (WHERE counted), 0) FROM new GROUP BY card_id"
)
# A large batch goes in by COPY (its rows built as text several times faster than the driver
# encodes six arrays of one value each). Straight into usage_records (a first import: no
# speculative insertion, a third less WAL; the service left out the ids it found known), in a
# savepoint: a known id stops the COPY, the savepoint is rolled back, and the batch is copied
# into a temporary table (not WAL-logged) and inserted from it with ON CONFLICT DO NOTHING.
# Below COPY_RECORDS_MIN (a signed delivery, a small file) the arrays are cheaper than creating
# a table.
COPY_RECORDS_MIN = 10_000
_RECORD_COLUMNS = ("record_id", "card_id", "used_at", "data_used_mb", "counted", "received_at")
_BATCH_TABLE = "usage_batch"  # named as such in _INSERT_FROM_BATCH
_CREATE_BATCH = (
    f"CREATE TEMPORARY TABLE {_BATCH_TABLE} (record_id varchar(64), card_id varchar(64), "
    "used_at timestamptz, data_used_mb bigint, counted boolean, received_at timestamptz) "
    "ON COMMIT DROP"
)
_DROP_BATCH = f"DROP TABLE IF EXISTS pg_temp.{_BATCH_TABLE}"
_INSERT_FROM_BATCH = text(
    "WITH new AS (INSERT INTO usage_records "
    "(record_id, card_id, used_at, data_used_mb, counted, received_at) "
    "SELECT v.record_id, v.card_id, v.used_at, v.data_used_mb, v.counted, v.received_at "
    "FROM usage_batch AS v "
    "ON CONFLICT (record_id) DO NOTHING RETURNING card_id, data_used_mb, counted) "
    "SELECT card_id, count(*), count(*) FILTER (WHERE NOT counted), "
    "coalesce(sum(data_used_mb) FILTER (WHERE counted), 0) FROM new GROUP BY card_id"
)
# One array rather than a row per id: a hundred thousand rows are as many objects for Python's
# garbage collector to look at while they live.
_KNOWN_IDS = (
    "SELECT coalesce(array_agg(record_id), '{}') FROM usage_records "
    "WHERE record_id = ANY($1::varchar[])"
)
_CARD_IDS = text(
    "SELECT id, msisdn, iccid FROM cards "
    "WHERE msisdn = ANY(CAST(:msisdns AS varchar[])) OR iccid = ANY(CAST(:iccids AS varchar[]))"
)
# Read by the driver: rows of ten thousand cards a batch become cards several times faster than
# through SQLAlchemy's result processing.
_LOCK_CARDS = (
    "SELECT id, msisdn, iccid, kind, status, currency, credit_minor, data_quota_mb, validity_end, "
    "bill_due_minor, bill_due_date, holder_name, email, version FROM cards "
    "WHERE id = ANY($1::varchar[]) ORDER BY id FOR NO KEY UPDATE"
)
_STATES = (
    "SELECT card_id, period, period_quota_mb, used_mb, data_low_period, data_exhausted_period, "
    "data_barred, network_pending FROM card_usage WHERE card_id = ANY($1::varchar[])"
)
_KINDS = {kind.value: kind for kind in CardKind}
_STATUSES = {status.value: status for status in CardStatus}
# Sent by the driver (arrays of ten thousand values each, no statement processing per value).
_DEBIT_QUOTAS = (
    "UPDATE cards SET data_quota_mb = v.quota, version = cards.version + 1, updated_at = $4 "
    "FROM unnest($1::varchar[], $2::bigint[], $3::int[]) AS v(id, quota, version) "
    "WHERE cards.id = v.id AND cards.version = v.version"
)
_SAVE_STATES = (
    "INSERT INTO card_usage (card_id, period, period_quota_mb, used_mb, data_low_period, "
    "data_exhausted_period, data_barred, network_pending, network_attempts, network_next_at, "
    "updated_at) SELECT v.*, 0, CASE WHEN v.network_pending THEN $9::timestamptz END, "
    "$9::timestamptz FROM unnest($1::varchar[], $2::varchar[], $3::bigint[], $4::bigint[], "
    "$5::varchar[], $6::varchar[], $7::boolean[], $8::boolean[]) AS v(card_id, period, "
    "period_quota_mb, used_mb, data_low_period, data_exhausted_period, data_barred, "
    "network_pending) ON CONFLICT (card_id) DO UPDATE SET period = excluded.period, "
    "period_quota_mb = excluded.period_quota_mb, used_mb = excluded.used_mb, "
    "data_low_period = excluded.data_low_period, "
    "data_exhausted_period = excluded.data_exhausted_period, data_barred = excluded.data_barred, "
    "network_pending = excluded.network_pending, network_attempts = 0, "
    "network_next_at = excluded.network_next_at, updated_at = excluded.updated_at"
)

_STATE_COLUMNS = (
    "period",
    "period_quota_mb",
    "used_mb",
    "data_low_period",
    "data_exhausted_period",
    "data_barred",
    "network_pending",
)


def _state_of(row: Any) -> UsageState:
    m = row._mapping
    return UsageState(
        card_id=m["card_id"],
        period=m["period"],
        period_quota_mb=int(m["period_quota_mb"]),
        used_mb=int(m["used_mb"]),
        data_low_period=m["data_low_period"],
        data_exhausted_period=m["data_exhausted_period"],
        data_barred=bool(m["data_barred"]),
        network_pending=bool(m["network_pending"]),
    )


def copy_text(records: Sequence[UsageRecord]) -> bytes:
    """The records as the rows of a COPY in text format, built with one join: a third of the
    time the driver takes to encode them in binary. A record id is printable (no tab, line
    end or other control character), so only a backslash is escaped; card ids are ours."""
    times: dict[dt.datetime, str] = {}  # a batch's records were received at one time
    flags = ("f", "t")
    return "".join(
        [
            f"{record_id.replace(BACKSLASH, ESCAPED) if BACKSLASH in record_id else record_id}"
            f"\t{card_id}\t{used_at.isoformat()}\t{data_used_mb}\t{flags[counted]}\t"
            f"{times.get(received_at) or times.setdefault(received_at, received_at.isoformat())}\n"
            for record_id, card_id, used_at, data_used_mb, counted, received_at in records
        ]
    ).encode()


def sum_per_card(new: Sequence[UsageRecord]) -> list[InsertedUsage]:
    """What was inserted, per card (as the PostgreSQL statement's GROUP BY gives it)."""
    records = Counter(card_id for _, card_id, _, _, _, _ in new)
    earlier: Counter[str] = Counter()
    counted_mb: Counter[str] = Counter()
    for _, card_id, _, data_used_mb, counted, _ in new:
        if counted:
            counted_mb[card_id] += data_used_mb
        else:
            earlier[card_id] += 1
    return [
        InsertedUsage(card_id, count, earlier[card_id], counted_mb[card_id])
        for card_id, count in records.items()
    ]


class UsageRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._postgresql = connection.dialect.name == "postgresql"
        self._driver_connection: Any = None  # see _driver

    def _among(self, column: Any) -> Any:
        """``column`` is one of the list parameter ``ids``: one array parameter on PostgreSQL
        (an expanding IN of ten thousand ids costs more to render than to run)."""
        if self._postgresql:
            return column == func.any(bindparam("ids", type_=ARRAY(String)))
        return column.in_(many())

    async def card_ids(self, *, msisdns: Sequence[str], iccids: Sequence[str]) -> dict[str, str]:
        if not msisdns and not iccids:
            return {}
        if self._postgresql:
            rows = await self._connection.execute(
                _CARD_IDS, {"msisdns": list(msisdns), "iccids": list(iccids)}
            )
        else:
            cards = t.cards.c
            rows = await self._connection.execute(
                select(cards.id, cards.msisdn, cards.iccid).where(
                    or_(cards.msisdn.in_(many("msisdns")), cards.iccid.in_(many("iccids")))
                ),
                {"msisdns": list(msisdns), "iccids": list(iccids)},
            )
        found: dict[str, str] = {}
        for card_id, msisdn, iccid in rows:
            found[msisdn] = card_id
            found[iccid] = card_id
        return found

    async def lock_cards(self, card_ids: Sequence[str]) -> dict[str, Card]:
        if not card_ids:
            return {}
        ids = sorted(set(card_ids))
        if not self._postgresql:  # one writer at a time: nothing to lock against
            return await CardRepository(self._connection).get_many(ids)
        rows = await (await self._driver()).fetch(_LOCK_CARDS, ids)
        amounts: dict[tuple[int, str], Money] = {}  # most cards have the same few amounts
        cards: dict[str, Card] = {}
        for row in rows:
            card_id, msisdn, iccid, kind, status, currency, credit, quota, *rest = row
            validity_end, bill_due, bill_due_date, holder_name, email, version = rest
            credit_money = amounts.get((credit, currency))
            if credit_money is None:
                credit_money = amounts[credit, currency] = Money(credit, currency)
            bill_money = amounts.get((bill_due, currency))
            if bill_money is None:
                bill_money = amounts[bill_due, currency] = Money(bill_due, currency)
            cards[card_id] = Card(
                card_id,
                msisdn,
                iccid,
                _KINDS[kind],
                _STATUSES[status],
                currency,
                credit_money,
                quota,
                validity_end,
                bill_money,
                bill_due_date,
                holder_name,
                email,
                version,
            )
        return cards

    async def known_record_ids(self, record_ids: Sequence[str]) -> set[str]:
        if not record_ids:
            return set()
        if self._postgresql:
            return set(await (await self._driver()).fetchval(_KNOWN_IDS, list(record_ids)))
        known: set[str] = set()
        ids = list(record_ids)
        for start in range(0, len(ids), SQLITE_IDS_PER_QUERY_MAX):
            found = await self._connection.execute(
                select(t.usage_records.c.record_id).where(t.usage_records.c.record_id.in_(many())),
                {"ids": ids[start : start + SQLITE_IDS_PER_QUERY_MAX]},
            )
            known.update(row[0] for row in found)
        return known

    async def insert_records(self, records: Sequence[UsageRecord]) -> list[InsertedUsage]:
        if not records:
            return []
        if self._postgresql and len(records) >= COPY_RECORDS_MIN:
            return await self._copy_records(records)
        if self._postgresql:  # ON CONFLICT leaves out known ids and a second of one id
            rows = await self._connection.execute(
                _INSERT_NEW_RECORDS,
                {
                    "record_ids": [record[0] for record in records],
                    "card_ids": [record[1] for record in records],
                    "used_ats": [record[2] for record in records],
                    "data_used": [record[3] for record in records],
                    "counted": [record[4] for record in records],
                    "received_ats": [record[5] for record in records],
                },
            )
            return [InsertedUsage(row[0], int(row[1]), int(row[2]), int(row[3])) for row in rows]
        known = await self.known_record_ids([record[0] for record in records])
        new: list[UsageRecord] = []
        for record in records:  # the first of an id sent twice in the batch
            if record[0] not in known:
                known.add(record[0])
                new.append(record)
        if new:
            await self._connection.execute(
                t.usage_records.insert(),
                [dict(zip(_RECORD_COLUMNS, record, strict=True)) for record in new],
            )
        return sum_per_card(new)

    async def _copy_records(self, records: Sequence[UsageRecord]) -> list[InsertedUsage]:
        """PostgreSQL, a large batch (see COPY_RECORDS_MIN). The statements around the COPY go
        through SQLAlchemy, so the COPY runs in the unit of work's transaction."""
        rows = copy_text(records)
        driver = await self._driver()
        try:
            async with self._connection.begin_nested():  # a savepoint
                await driver.copy_to_table(
                    "usage_records", source=io.BytesIO(rows), columns=_RECORD_COLUMNS
                )
            return sum_per_card(records)
        except asyncpg.UniqueViolationError:
            pass  # a known id (or one twice in the batch): rolled back to the savepoint
        await self._connection.exec_driver_sql(_DROP_BATCH)  # a second batch in one transaction
        await self._connection.exec_driver_sql(_CREATE_BATCH)
        await driver.copy_to_table(_BATCH_TABLE, source=io.BytesIO(rows), columns=_RECORD_COLUMNS)
        inserted = await self._connection.execute(_INSERT_FROM_BATCH)
        return [InsertedUsage(row[0], int(row[1]), int(row[2]), int(row[3])) for row in inserted]

    async def _driver(self) -> Any:
        """The asyncpg connection under the unit of work's, in its transaction (asked once)."""
        if self._driver_connection is None:
            self._driver_connection = await driver_connection(self._connection)
        return self._driver_connection

    async def debit_quotas(
        self, debits: Sequence[tuple[str, int, int]], *, at: dt.datetime
    ) -> None:
        if not debits:
            return
        if self._postgresql:
            ids, quotas, versions = (list(column) for column in zip(*debits, strict=True))
            status = await (await self._driver()).execute(_DEBIT_QUOTAS, ids, quotas, versions, at)
            if int(status.rsplit(" ", 1)[-1]) != len(debits):  # "UPDATE <rows>"
                raise InvariantError("a card changed under us while its row was locked")
            return
        cards = t.cards.c
        result = await self._connection.execute(
            update(t.cards)
            .where(cards.id == bindparam("card_id"), cards.version == bindparam("read"))
            .values(
                data_quota_mb=bindparam("quota"),
                version=cards.version + 1,
                updated_at=bindparam("at"),
            ),
            [
                {"card_id": card_id, "quota": quota, "read": version, "at": at}
                for card_id, quota, version in debits
            ],
        )
        if result.rowcount != len(debits):
            raise InvariantError("a card changed under us while its row was locked")

    async def period_starts(self, card_ids: Sequence[str]) -> dict[str, dt.datetime]:
        if not card_ids:
            return {}
        renewals = t.renewals.c
        rows = await self._connection.execute(
            select(renewals.card_id, func.max(renewals.completed_at))
            .where(
                self._among(renewals.card_id),
                renewals.status == RenewalStatus.COMPLETED.value,
                renewals.validity_days > 0,
            )
            .group_by(renewals.card_id),
            {"ids": sorted(set(card_ids))},
        )
        # max() keeps the column's type: aware UTC datetimes come back on both databases.
        return {card_id: started for card_id, started in rows if started is not None}

    async def states(self, card_ids: Sequence[str]) -> dict[str, UsageState]:
        if not card_ids:
            return {}
        if self._postgresql:
            found = await (await self._driver()).fetch(_STATES, sorted(set(card_ids)))
            return {row[0]: UsageState._make(row) for row in found}
        rows = await self._connection.execute(
            select(t.card_usage).where(self._among(t.card_usage.c.card_id)),
            {"ids": sorted(set(card_ids))},
        )
        return {row.card_id: _state_of(row) for row in rows}

    async def save_states(self, states: Sequence[UsageState], *, at: dt.datetime) -> None:
        if not states:
            return
        if self._postgresql:  # a state is a tuple of the columns, in the statement's order
            columns = [list(column) for column in zip(*states, strict=True)]
            await (await self._driver()).execute(_SAVE_STATES, *columns, at)
            return
        insert = dialect_insert(self._connection, t.card_usage)
        statement = insert.on_conflict_do_update(
            index_elements=[t.card_usage.c.card_id],
            set_={
                **{column: insert.excluded[column] for column in _STATE_COLUMNS},
                "network_attempts": 0,
                "network_next_at": insert.excluded.network_next_at,
                "updated_at": insert.excluded.updated_at,
            },
        )
        await self._connection.execute(
            statement,
            [
                {
                    "card_id": state.card_id,
                    "period": state.period,
                    "period_quota_mb": state.period_quota_mb,
                    "used_mb": state.used_mb,
                    "data_low_period": state.data_low_period,
                    "data_exhausted_period": state.data_exhausted_period,
                    "data_barred": state.data_barred,
                    "network_pending": state.network_pending,
                    "network_attempts": 0,
                    "network_next_at": at if state.network_pending else None,
                    "updated_at": at,
                }
                for state in states
            ],
        )

    async def lift_bars(self, *, limit: int) -> int:
        usage = t.card_usage.c
        barred_with_data = (
            select(usage.card_id)
            .join(t.cards, t.cards.c.id == usage.card_id)
            .where(usage.data_barred, t.cards.c.data_quota_mb > 0)
            .limit(limit)
        )
        if self._connection.dialect.name == "postgresql":
            barred_with_data = barred_with_data.with_for_update(of=t.card_usage, skip_locked=True)
        ids = [row[0] for row in await self._connection.execute(barred_with_data)]
        if not ids:
            return 0
        await self._connection.execute(
            update(t.card_usage)
            .where(usage.card_id.in_(many()))
            .values(
                data_barred=False,
                network_pending=True,
                network_attempts=0,
                network_next_at=func.coalesce(usage.network_next_at, usage.updated_at),
            ),
            {"ids": ids},
        )
        return len(ids)

    async def claim_network_changes(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[NetworkChange]:
        usage = t.card_usage.c
        picked = (
            select(usage.card_id)
            .where(usage.network_pending, usage.network_next_at <= now)
            .order_by(usage.network_next_at)
            .limit(limit)
        )
        if self._connection.dialect.name == "postgresql":
            picked = picked.with_for_update(skip_locked=True)
        ids = [row[0] for row in await self._connection.execute(picked)]
        if not ids:
            return []
        await self._connection.execute(
            update(t.card_usage)
            .where(usage.card_id.in_(many()))
            .values(network_next_at=lease_until, network_attempts=usage.network_attempts + 1),
            {"ids": ids},
        )
        rows = await self._connection.execute(
            select(t.card_usage, t.cards.c.msisdn, t.cards.c.iccid)
            .join(t.cards, t.cards.c.id == usage.card_id)
            .where(usage.card_id.in_(many()))
            .order_by(usage.card_id),
            {"ids": ids},
        )
        return [
            NetworkChange(_state_of(row), row.msisdn, row.iccid, int(row.network_attempts))
            for row in rows
        ]

    async def network_told(self, card_id: str, *, data_barred: bool) -> None:
        usage = t.card_usage.c
        await self._connection.execute(
            update(t.card_usage)
            .where(and_(usage.card_id == card_id, usage.data_barred == data_barred))
            .values(network_pending=False, network_attempts=0, network_next_at=None)
        )

    async def network_failed(self, card_id: str, *, next_at: dt.datetime) -> None:
        usage = t.card_usage.c
        await self._connection.execute(
            update(t.card_usage)
            .where(and_(usage.card_id == card_id, usage.network_pending))
            .values(network_next_at=next_at)
        )

    async def first_delivery(self, signature: str, *, at: dt.datetime) -> bool:
        insert = dialect_insert(self._connection, t.usage_deliveries)
        result = await self._connection.execute(
            insert.values(signature=signature, received_at=at).on_conflict_do_nothing(
                index_elements=[t.usage_deliveries.c.signature]
            )
        )
        return bool(result.rowcount == 1)

    async def forget_deliveries(self, *, received_before: dt.datetime, limit: int) -> int:
        deliveries = t.usage_deliveries.c
        old = (
            select(deliveries.signature)
            .where(deliveries.received_at < received_before)
            .order_by(deliveries.received_at)
            .limit(limit)
        )
        ids = [row[0] for row in await self._connection.execute(old)]
        if not ids:
            return 0
        await self._connection.execute(
            t.usage_deliveries.delete().where(deliveries.signature.in_(many())), {"ids": ids}
        )
        return len(ids)
