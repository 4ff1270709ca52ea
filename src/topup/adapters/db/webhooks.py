"""Webhook events seen, each applied once. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert


class WebhookRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def first_times(
        self, events: Sequence[tuple[str, str, str]], *, at: dt.datetime
    ) -> set[tuple[str, str]]:
        """Remember gateways' events, each ``(gateway, event id, payment id)``; returns the
        ``(gateway, event id)`` pairs seen for the first time (not a repeat or a replay)."""
        if not events:
            return set()
        w = t.webhook_events
        statement = (
            dialect_insert(self._connection, w)
            .on_conflict_do_nothing(index_elements=[w.c.gateway, w.c.event_id])
            .returning(w.c.gateway, w.c.event_id)
        )
        rows = await self._connection.execute(
            statement,
            [
                {
                    "gateway": gateway,
                    "event_id": event_id,
                    "payment_id": payment_id,
                    "received_at": at,
                }
                for gateway, event_id, payment_id in events
            ],
        )
        return {(row[0], row[1]) for row in rows}
