"""Ledger entries and balances, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.ledger import Entry, check_balanced


class MemoryLedgerRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def record(self, entry: Entry, *, at: dt.datetime) -> int:
        return (await self.record_many([entry], at=at))[0]

    async def record_many(self, entries: Sequence[Entry], *, at: dt.datetime) -> list[int]:
        """Balances move at once (the database moves them at commit; nobody else sees the
        difference, since a rollback drops both)."""
        tables = self._tables
        taken = {
            (entry.renewal_id, entry.kind)
            for _, entry, _ in tables.ledger_entries
            if entry.renewal_id is not None
        }
        ids = []
        for entry in entries:
            check_balanced(entry.postings)
            tables.require_renewal(entry.renewal_id)
            tables.require_card(entry.card_id)
            if entry.renewal_id is not None:
                if (entry.renewal_id, entry.kind) in taken:
                    raise unique_violation("ledger_entries", (entry.renewal_id, entry.kind.value))
                taken.add((entry.renewal_id, entry.kind))
            entry_id = tables.next_id()
            tables.ledger_entries.append((entry_id, entry, at))
            for posting in entry.postings:
                key = (posting.account, posting.amount.currency)
                tables.balances[key] = tables.balances.get(key, 0) + posting.amount.minor
            ids.append(entry_id)
        return ids

    async def balance(self, account: str, currency: str) -> int:
        return self._tables.balances.get((account, currency), 0)

    async def entries_for_card(
        self, card_id: str, *, limit: int
    ) -> list[tuple[int, Entry, dt.datetime]]:
        found = [row for row in self._tables.ledger_entries if row[1].card_id == card_id]
        return sorted(found, key=lambda row: row[0], reverse=True)[:limit]
