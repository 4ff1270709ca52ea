"""Webhook events seen, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from topup.adapters.memory.tables import Tables


class MemoryWebhookRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def first_times(
        self, events: Sequence[tuple[str, str, str]], *, at: dt.datetime
    ) -> set[tuple[str, str]]:
        seen = self._tables.webhook_events
        first = set()
        for gateway, event_id, payment_id in events:
            if (gateway, event_id) not in seen:
                seen[(gateway, event_id)] = payment_id
                first.add((gateway, event_id))
        return first
