"""API keys: only the keyed hash of each key's secret reaches the table. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Row, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.api_keys import ApiKey
from topup.domain.callers import ApiKeyRole


def _insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _api_key(row: Row[Any]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        prefix=m["prefix"],
        secret_hash=m["secret_hash"],
        name=m["name"],
        role=ApiKeyRole(m["role"]),
        outlet=m["outlet"],
        region=m["region"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )


class ApiKeyRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, key: ApiKey) -> bool:
        """Insert the key; False (and nothing written) if its prefix is taken."""
        statement = (
            _insert(self._connection, t.api_keys)
            .values(
                id=key.id,
                prefix=key.prefix,
                secret_hash=key.secret_hash,
                name=key.name,
                role=key.role.value,
                outlet=key.outlet,
                region=key.region,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
            )
            .on_conflict_do_nothing(index_elements=[t.api_keys.c.prefix])
            .returning(t.api_keys.c.id)
        )
        return (await self._connection.execute(statement)).first() is not None

    async def get(self, key_id: str) -> ApiKey | None:
        query = select(t.api_keys).where(t.api_keys.c.id == key_id)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _api_key(row)

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        """One query on the unique index of ``prefix``; revoked keys too (the caller decides)."""
        query = select(t.api_keys).where(t.api_keys.c.prefix == prefix)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _api_key(row)

    async def list_page(self, *, limit: int, offset: int = 0) -> list[ApiKey]:
        """Oldest first, then by id, so that pages do not overlap."""
        keys = t.api_keys
        query = select(keys).order_by(keys.c.created_at, keys.c.id).limit(limit).offset(offset)
        return [_api_key(row) for row in await self._connection.execute(query)]

    async def revoke(self, key_id: str, *, now: dt.datetime) -> bool:
        """Mark the key revoked; False if there is no such key or it was revoked already."""
        keys = t.api_keys
        result = await self._connection.execute(
            update(keys)
            .where(keys.c.id == key_id, keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(keys.c.id)
        )
        return result.first() is not None
