"""Saved payment cards: the PSP's token, sealed, and what the payer recognises the card by;
never its number. Nothing here commits."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import Row, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.saved_payment_cards import SavedPaymentCard


def _insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _saved(row: Row[Any]) -> SavedPaymentCard:
    m = row._mapping
    return SavedPaymentCard(**{column.name: m[column.name] for column in fields(SavedPaymentCard)})


class SavedPaymentCardRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, card: SavedPaymentCard) -> bool:
        """Insert the card; False (and nothing written) if the account saved it already."""
        table = t.saved_payment_cards
        statement = (
            _insert(self._connection, table)
            .values(**asdict(card))
            .on_conflict_do_nothing(index_elements=[table.c.account_id, table.c.fingerprint])
            .returning(table.c.id)
        )
        return (await self._connection.execute(statement)).first() is not None

    async def of_account(self, account_id: str, *, limit: int) -> list[SavedPaymentCard]:
        table = t.saved_payment_cards
        query = (
            select(table)
            .where(table.c.account_id == account_id)
            .order_by(table.c.created_at, table.c.id)
            .limit(limit)
        )
        return [_saved(row) for row in await self._connection.execute(query)]

    async def get(self, account_id: str, saved_id: str) -> SavedPaymentCard | None:
        table = t.saved_payment_cards
        query = select(table).where(table.c.id == saved_id, table.c.account_id == account_id)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _saved(row)

    async def count(self, account_id: str) -> int:
        table = t.saved_payment_cards
        query = select(func.count()).select_from(table).where(table.c.account_id == account_id)
        return int((await self._connection.execute(query)).scalar_one())

    async def remove(self, account_id: str, saved_id: str) -> bool:
        table = t.saved_payment_cards
        result = await self._connection.execute(
            delete(table).where(table.c.id == saved_id, table.c.account_id == account_id)
        )
        return bool(result.rowcount)
