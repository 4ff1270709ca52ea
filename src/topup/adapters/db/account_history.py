"""What an account sees of its cards' renewals: only those of cards linked to it (the join with
``card_links`` decides), filtered and a page at a time. Reads only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.renewals import renewal_from_row
from topup.domain.records import RenewalRecord
from topup.domain.renewal import RenewalStatus


class AccountHistoryQueries:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

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
        renewals, links = t.renewals, t.card_links
        query = (
            select(renewals)
            .join(links, links.c.card_id == renewals.c.card_id)
            .where(links.c.account_id == account_id)
        )
        if card_id is not None:
            query = query.where(renewals.c.card_id == card_id)
        if since is not None:
            query = query.where(renewals.c.created_at >= since)
        if until is not None:
            query = query.where(renewals.c.created_at < until)
        if statuses:
            query = query.where(renewals.c.status.in_([status.value for status in statuses]))
        if paid_only:
            query = query.where(renewals.c.paid_at.is_not(None))
        query = (
            query.order_by(renewals.c.created_at.desc(), renewals.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [renewal_from_row(row) for row in await self._connection.execute(query)]
