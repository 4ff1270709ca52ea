"""HTTP idempotency records, in memory: the records ``adapters.db.idempotency`` keeps, by id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.records import IdempotencyFinish, IdempotencyRecord


class MemoryIdempotencyRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add_many(self, records: Sequence[IdempotencyRecord]) -> set[str]:
        """Like ``ON CONFLICT DO NOTHING``: a record whose id or (scope, key) is taken is left
        out."""
        stored = self._tables.idempotency
        keys = {(record.scope, record.key) for record in stored.values()}
        inserted = set()
        for record in records:
            if record.id in stored or (record.scope, record.key) in keys:
                continue
            stored[record.id] = record
            keys.add((record.scope, record.key))
            inserted.add(record.id)
        return inserted

    async def by_keys(
        self, keys: Sequence[tuple[str, str]], *, for_update: bool = False
    ) -> dict[tuple[str, str], IdempotencyRecord]:
        wanted = set(keys)
        return {
            (record.scope, record.key): record
            for record in self._tables.idempotency.values()
            if (record.scope, record.key) in wanted
        }

    async def restart(self, old_id: str, record: IdempotencyRecord) -> None:
        stored = self._tables.idempotency
        found = stored.get(old_id)
        if found is None:
            return
        changed = replace(
            found,
            id=record.id,
            fingerprint=record.fingerprint,
            state=record.state,
            created_at=record.created_at,
            started_at=record.started_at,
        )
        if changed.id != old_id:
            if changed.id in stored:
                raise unique_violation("idempotency_requests", changed.id)
            del stored[old_id]
        stored[changed.id] = changed

    async def finish_many(self, finishes: Sequence[IdempotencyFinish]) -> None:
        stored = self._tables.idempotency
        for finish in finishes:
            found = stored.get(finish.request_id)
            if found is not None:
                stored[finish.request_id] = replace(
                    found,
                    state=finish.state,
                    status_code=finish.status_code,
                    content_type=finish.content_type,
                    body=finish.body,
                )

    async def prune(self, *, created_before: dt.datetime, limit: int) -> int:
        stored = self._tables.idempotency
        old = [key for key, record in stored.items() if record.created_at < created_before]
        for key in old[:limit]:
            del stored[key]
        return len(old[:limit])
