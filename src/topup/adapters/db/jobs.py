"""Jobs for the worker: enqueue, lease, finish, retry. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import lease_due, update_many
from topup.domain.records import JobRecord, JobRetry, JobStatus


def job_from_row(row: Row[Any]) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=int(m["id"]),
        kind=m["kind"],
        renewal_id=m["renewal_id"],
        status=JobStatus(m["status"]),
        attempts=int(m["attempts"]),
        claims=int(m["claims"]),
        next_attempt_at=m["next_attempt_at"],
        first_requested_at=m["first_requested_at"],
        last_error=m["last_error"],
    )


_RETRY_JOB = (
    update(t.jobs)
    .where(t.jobs.c.id == bindparam("job_id"), t.jobs.c.status == "queued")
    .values(
        next_attempt_at=bindparam("next_attempt_at"),
        attempts=t.jobs.c.attempts + bindparam("attempts_added"),
        last_error=bindparam("last_error"),
        updated_at=bindparam("updated_at"),
    )
)


class JobRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def enqueue(self, *, kind: str, renewal_id: str, at: dt.datetime) -> None:
        await self.enqueue_many(kind=kind, renewal_ids=[renewal_id], at=at)

    async def enqueue_many(self, *, kind: str, renewal_ids: Sequence[str], at: dt.datetime) -> None:
        if not renewal_ids:
            return
        await self._connection.execute(
            t.jobs.insert(),
            [
                {
                    "kind": kind,
                    "renewal_id": renewal_id,
                    "status": "queued",
                    "attempts": 0,
                    "claims": 0,
                    "next_attempt_at": at,
                    "first_requested_at": at,
                    "created_at": at,
                    "updated_at": at,
                }
                for renewal_id in renewal_ids
            ],
        )

    async def claim(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[JobRecord]:
        """Take due jobs. A claimed job is hidden until its lease ends; a worker that dies simply
        lets the lease run out and the job is claimed again."""
        rows = await lease_due(
            self._connection,
            t.jobs,
            and_(t.jobs.c.status == "queued", t.jobs.c.next_attempt_at <= now),
            order_by=t.jobs.c.next_attempt_at,
            limit=limit,
            values={
                "next_attempt_at": lease_until,
                "claims": t.jobs.c.claims + 1,
                "updated_at": now,
            },
        )
        return sorted((job_from_row(row) for row in rows), key=lambda job: job.id)

    async def finish(
        self, job: JobRecord, *, status: JobStatus, at: dt.datetime, error: str | None = None
    ) -> bool:
        """Mark a queued job done or failed; False if another worker already did."""
        result = await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job.id, t.jobs.c.status == "queued")
            .values(status=status.value, updated_at=at, last_error=error)
        )
        return result.rowcount == 1

    async def finish_many(
        self,
        job_ids: Sequence[int],
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
    ) -> set[int]:
        """Mark queued jobs done or failed; returns the ids this call finished (another worker
        may have finished some first)."""
        if not job_ids:
            return set()
        result = await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id.in_(sorted(set(job_ids))), t.jobs.c.status == "queued")
            .values(status=status.value, updated_at=at, last_error=error)
            .returning(t.jobs.c.id)
        )
        return {int(row[0]) for row in result}

    async def mark_failed(self, failures: Sequence[tuple[int, str]], *, at: dt.datetime) -> None:
        """Jobs this transaction finished that turned out to fail, each ``(job id, why)``."""
        await update_many(
            self._connection,
            t.jobs,
            [
                (job_id, {"status": "failed", "last_error": why, "updated_at": at})
                for job_id, why in failures
            ],
        )

    async def retry_later(
        self,
        job: JobRecord,
        *,
        at: dt.datetime,
        next_attempt_at: dt.datetime,
        failed: bool,
        error: str | None,
    ) -> None:
        await self.retry_many([JobRetry(job.id, next_attempt_at, failed, error)], at=at)

    async def retry_many(self, retries: Sequence[JobRetry], *, at: dt.datetime) -> None:
        """Put queued jobs back for a later attempt (a failed attempt counts towards the limit)."""
        if not retries:
            return
        await self._connection.execute(
            _RETRY_JOB,
            [
                {
                    "job_id": retry.job_id,
                    "next_attempt_at": retry.next_attempt_at,
                    "attempts_added": 1 if retry.failed else 0,
                    "last_error": retry.error,
                    "updated_at": at,
                }
                for retry in retries
            ],
        )

    async def for_renewal(self, renewal_id: str) -> list[JobRecord]:
        rows = await self._connection.execute(
            select(t.jobs).where(t.jobs.c.renewal_id == renewal_id).order_by(t.jobs.c.id)
        )
        return [job_from_row(row) for row in rows]
