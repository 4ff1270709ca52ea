"""HTTP idempotency records, in memory: the rows ``adapters.db.idempotency`` keeps, by id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from topup.adapters.memory.tables import Tables, unique_violation


class MemoryIdempotencyRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Like ``ON CONFLICT DO NOTHING``: a row whose id or (scope, key) is taken is left out."""
        stored = self._tables.idempotency
        keys = {(row["scope"], row["key"]) for row in stored.values()}
        inserted = set()
        for row in rows:
            if row["id"] in stored or (row["scope"], row["key"]) in keys:
                continue
            stored[row["id"]] = {
                "status_code": None,
                "content_type": None,
                "body": None,
                **row,
            }
            keys.add((row["scope"], row["key"]))
            inserted.add(row["id"])
        return inserted

    async def by_keys(
        self, keys: Sequence[tuple[str, str]], *, for_update: bool = False
    ) -> dict[tuple[str, str], dict[str, Any]]:
        wanted = set(keys)
        return {
            (row["scope"], row["key"]): dict(row)
            for row in self._tables.idempotency.values()
            if (row["scope"], row["key"]) in wanted
        }

    async def restart(self, old_id: str, values: dict[str, Any]) -> None:
        stored = self._tables.idempotency
        row = stored.get(old_id)
        if row is None:
            return
        changed = {**row, **values}
        if changed["id"] != old_id:
            if changed["id"] in stored:
                raise unique_violation("idempotency_requests", changed["id"])
            del stored[old_id]
        stored[changed["id"]] = changed

    async def finish_many(self, rows: Sequence[dict[str, Any]]) -> None:
        stored = self._tables.idempotency
        for row in rows:
            found = stored.get(row["request_id"])
            if found is not None:
                stored[row["request_id"]] = {
                    **found,
                    "state": row["state"],
                    "status_code": row["status_code"],
                    "content_type": row["content_type"],
                    "body": row["body"],
                }

    async def prune(self, *, created_before: dt.datetime, limit: int) -> int:
        stored = self._tables.idempotency
        old = [key for key, row in stored.items() if row["created_at"] < created_before][:limit]
        for key in old:
            del stored[key]
        return len(old)
