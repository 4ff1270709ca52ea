"""Ledger entries and balances. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import balance_upsert
from topup.domain.errors import InvariantError
from topup.domain.ledger import Entry, EntryKind, Posting, check_balanced
from topup.domain.money import Money


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
        await self._connection.execute(balance_upsert(self._connection.dialect.name), rows)

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
