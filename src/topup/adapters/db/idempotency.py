"""HTTP idempotency records: one row per (caller, key), holding the first response."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t

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

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert records; one whose (scope, key) exists is left out. Returns the ids inserted."""
        if not rows:
            return set()
        insert = (
            postgresql.insert(_table)
            if self._connection.dialect.name == "postgresql"
            else sqlite.insert(_table)
        )
        statement = insert.on_conflict_do_nothing().returning(_table.c.id)
        return {row[0] for row in await self._connection.execute(statement, list(rows))}

    async def by_keys(
        self, keys: Sequence[tuple[str, str]], *, for_update: bool = False
    ) -> dict[tuple[str, str], dict[str, Any]]:
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
        return {(row.scope, row.key): dict(row._mapping) for row in rows}

    async def restart(self, old_id: str, values: dict[str, Any]) -> None:
        """Take over a record (expired, abandoned or left open) for a new run."""
        await self._connection.execute(update(_table).where(_table.c.id == old_id).values(values))

    async def finish_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """``rows``: request_id, state, status_code, content_type, body."""
        if rows:
            await self._connection.execute(_FINISH, list(rows))

    async def prune(self, *, created_before: Any, limit: int) -> int:
        """Forget records whose replay time is over (at most ``limit`` at once)."""
        old = select(_table.c.id).where(_table.c.created_at < created_before).limit(limit)
        result = await self._connection.execute(delete(_table).where(_table.c.id.in_(old)))
        return int(result.rowcount or 0)
