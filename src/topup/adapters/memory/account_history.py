"""What an account sees of its cards' renewals, in memory (as ``adapters.db.account_history``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from topup.adapters.memory.tables import Tables
from topup.domain.records import RenewalRecord
from topup.domain.renewal import RenewalStatus


class MemoryAccountHistoryQueries:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def renewals_of_account(
        self,
        account_id: str,
        *,
        card_id: str | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        statuses: Sequence[RenewalStatus],
        paid_only: bool,
        limit: int,
        offset: int,
    ) -> list[RenewalRecord]:
        linked = {card for owner, card in self._tables.card_links if owner == account_id}
        found = [
            renewal
            for renewal in self._tables.renewals.values()
            if renewal.card_id in linked
            and (card_id is None or renewal.card_id == card_id)
            and (since is None or renewal.created_at >= since)
            and (until is None or renewal.created_at < until)
            and (not statuses or renewal.status in statuses)
            and (not paid_only or renewal.paid_at is not None)
        ]
        found.sort(key=lambda renewal: (renewal.created_at, renewal.id), reverse=True)
        return found[offset : offset + limit]
