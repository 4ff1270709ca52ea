"""HTTP idempotency records: one row per (caller, key), holding the first response."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.records import IdempotencyFinish, IdempotencyRecord, IdempotencyState

_table = t.idempotency_requests

_FINISH = (
    update(_table)
    .where(_table.c.id == bindparam("request_id"))
    .values(
        state=bindparam("state"),
        status_code=bindparam("status_code"),
        content_type=bindparam("content_type"),
        body=bindparam("body"),
    )
)


class IdempotencyRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, records: Sequence[IdempotencyRecord]) -> set[str]:
        """Insert records; one whose (scope, key) exists is left out. Returns the ids inserted."""
        if not records:
            return set()
        insert = (
            postgresql.insert(_table)
            if self._connection.dialect.name == "postgresql"
            else sqlite.insert(_table)
        )
        statement = insert.on_conflict_do_nothing().returning(_table.c.id)
        rows = [_row(record) for record in records]
        return {row[0] for row in await self._connection.execute(statement, rows)}

    async def by_keys(
        self, keys: Sequence[tuple[str, str]], *, for_update: bool = False
    ) -> dict[tuple[str, str], IdempotencyRecord]:
        if not keys:
            return {}
        query = (
            select(_table)
            .where(tuple_(_table.c.scope, _table.c.key).in_(sorted(set(keys))))
            .order_by(_table.c.scope, _table.c.key)
        )
        if for_update and self._connection.dialect.name == "postgresql":
            query = query.with_for_update()
        rows = await self._connection.execute(query)
        return {(row.scope, row.key): _record(row._mapping) for row in rows}

    async def restart(self, old_id: str, record: IdempotencyRecord) -> None:
        """Take over a record (expired, abandoned or left open) for a new run."""
        await self._connection.execute(
            update(_table)
            .where(_table.c.id == old_id)
            .values(
                id=record.id,
                fingerprint=record.fingerprint,
                state=record.state.value,
                created_at=record.created_at,
                started_at=record.started_at,
            )
        )

    async def finish_many(self, finishes: Sequence[IdempotencyFinish]) -> None:
        if finishes:
            await self._connection.execute(
                _FINISH,
                [
                    {
                        "request_id": finish.request_id,
                        "state": finish.state.value,
                        "status_code": finish.status_code,
                        "content_type": finish.content_type,
                        "body": finish.body,
                    }
                    for finish in finishes
                ],
            )

    async def prune(self, *, created_before: dt.datetime, limit: int) -> int:
        """Forget records whose replay time is over (at most ``limit`` at once)."""
        old = select(_table.c.id).where(_table.c.created_at < created_before).limit(limit)
        result = await self._connection.execute(delete(_table).where(_table.c.id.in_(old)))
        return int(result.rowcount or 0)


def _row(record: IdempotencyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "scope": record.scope,
        "key": record.key,
        "fingerprint": record.fingerprint,
        "state": record.state.value,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "status_code": record.status_code,
        "content_type": record.content_type,
        "body": record.body,
    }


def _record(row: Any) -> IdempotencyRecord:
    body = row["body"]
    return IdempotencyRecord(
        id=row["id"],
        scope=row["scope"],
        key=row["key"],
        fingerprint=row["fingerprint"],
        state=IdempotencyState(row["state"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        status_code=row["status_code"],
        content_type=row["content_type"],
        body=None if body is None else bytes(body),
    )
