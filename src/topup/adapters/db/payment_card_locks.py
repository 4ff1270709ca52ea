"""Payment-password attempt counts and locks per payment card, keyed on the card's fingerprint
as ``services.fingerprints`` makes it (never a token, which changes with the expiry). Never
commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert


class PaymentCardLockRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def locked(
        self, fingerprints: Sequence[str], *, now: dt.datetime
    ) -> dict[str, dt.datetime]:
        """The payment cards among these that are locked at ``now``, with when each lock ends."""
        if not fingerprints:
            return {}
        locks = t.instrument_locks
        rows = await self._connection.execute(
            select(locks.c.instrument_fingerprint, locks.c.locked_until).where(
                locks.c.instrument_fingerprint.in_(sorted(set(fingerprints))),
                locks.c.locked_until > now,
            )
        )
        return {row[0]: row[1] for row in rows}

    async def count_wrong_answer(
        self, fingerprint: str, *, now: dt.datetime, window_start: dt.datetime
    ) -> int:
        """Add one wrong answer; returns the wrong answers since ``window_start``, this one
        included (older ones are forgotten). Concurrent wrong answers are all counted."""
        locks = t.instrument_locks
        statement = dialect_insert(self._connection, locks).values(
            instrument_fingerprint=fingerprint,
            failed_attempts=1,
            first_failed_at=now,
            locked_until=None,
            updated_at=now,
        )
        stale = locks.c.first_failed_at < window_start
        statement = statement.on_conflict_do_update(
            index_elements=[locks.c.instrument_fingerprint],
            set_={
                "failed_attempts": case((stale, 1), else_=locks.c.failed_attempts + 1),
                "first_failed_at": case((stale, now), else_=locks.c.first_failed_at),
                "updated_at": now,
            },
        ).returning(locks.c.failed_attempts)
        return int((await self._connection.execute(statement)).scalar_one())

    async def lock(self, fingerprint: str, *, until: dt.datetime, now: dt.datetime) -> None:
        locks = t.instrument_locks
        await self._connection.execute(
            update(locks)
            .where(locks.c.instrument_fingerprint == fingerprint)
            .values(locked_until=until, updated_at=now)
        )

    async def forget(self, fingerprint: str) -> None:
        """A right answer: the wrong ones before it no longer count."""
        locks = t.instrument_locks
        await self._connection.execute(
            locks.delete().where(locks.c.instrument_fingerprint == fingerprint)
        )
