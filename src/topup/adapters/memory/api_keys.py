"""API keys, in memory."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.api_keys import ApiKey


class MemoryApiKeyRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add(self, key: ApiKey) -> bool:
        keys = self._tables.api_keys
        if any(other.prefix == key.prefix for other in keys.values()):
            return False  # ON CONFLICT (prefix) DO NOTHING
        if key.id in keys:
            raise unique_violation("api_keys", key.id)
        keys[key.id] = key
        return True

    async def get(self, key_id: str) -> ApiKey | None:
        return self._tables.api_keys.get(key_id)

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        return next((key for key in self._tables.api_keys.values() if key.prefix == prefix), None)

    async def list_page(self, *, limit: int, offset: int = 0) -> list[ApiKey]:
        keys = sorted(self._tables.api_keys.values(), key=lambda key: (key.created_at, key.id))
        return keys[offset : offset + limit]

    async def revoke(self, key_id: str, *, now: dt.datetime) -> bool:
        key = self._tables.api_keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self._tables.api_keys[key_id] = replace(key, revoked_at=now)
        return True
