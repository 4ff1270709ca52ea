"""Jobs for the worker, each about a subject (a renewal, a card, a batch): enqueue, lease,
withdraw, finish, retry. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import lease_due, update_many
from topup.domain.errors import InvariantError
from topup.domain.records import (
    JobKind,
    JobOutcome,
    JobRecord,
    JobRetry,
    JobStatus,
    JobSubject,
    SubjectKind,
)

_QUEUED = JobStatus.QUEUED.value


def job_from_row(row: Row[Any]) -> JobRecord:
    m = row._mapping
    try:
        kind = JobKind(m["kind"])
        subject = JobSubject(SubjectKind(m["subject_kind"]), m["subject_id"])
        status = JobStatus(m["status"])
        outcome = None if m["outcome"] is None else JobOutcome(m["outcome"])
    except ValueError as error:
        raise InvariantError(f"job {m['id']} holds a value topup does not know: {error}") from None
    return JobRecord(
        id=int(m["id"]),
        kind=kind,
        subject=subject,
        status=status,
        attempts=int(m["attempts"]),
        claims=int(m["claims"]),
        next_attempt_at=m["next_attempt_at"],
        first_requested_at=m["first_requested_at"],
        last_error=m["last_error"],
        reason=m["reason"],
        outcome=outcome,
    )


_RETRY_JOB = (
    update(t.jobs)
    .where(t.jobs.c.id == bindparam("job_id"), t.jobs.c.status == _QUEUED)
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

    async def enqueue(
        self, *, kind: JobKind, subject: JobSubject, at: dt.datetime, reason: str | None = None
    ) -> None:
        await self.enqueue_many(kind=kind, subjects=[subject], at=at, reason=reason)

    async def enqueue_many(
        self,
        *,
        kind: JobKind,
        subjects: Sequence[JobSubject],
        at: dt.datetime,
        reason: str | None = None,
    ) -> None:
        """Queue one job of ``kind`` for each subject, due at once. A second job of the same
        kind for the same subject breaks a unique constraint (the database refuses it)."""
        if not subjects:
            return
        await self._connection.execute(
            t.jobs.insert(),
            [
                {
                    "kind": kind.value,
                    "subject_kind": subject.kind.value,
                    "subject_id": subject.id,
                    "status": _QUEUED,
                    "attempts": 0,
                    "claims": 0,
                    "next_attempt_at": at,
                    "first_requested_at": at,
                    "created_at": at,
                    "updated_at": at,
                    "reason": reason,
                }
                for subject in subjects
            ],
        )

    async def claim(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[JobRecord]:
        """Take due jobs. A claimed job is hidden until its lease ends; a worker that dies simply
        lets the lease run out and the job is claimed again. Each claim counts in ``claims``,
        which ``withdraw_unclaimed`` checks in the same row: the two exclude each other."""
        rows = await lease_due(
            self._connection,
            t.jobs,
            and_(t.jobs.c.status == _QUEUED, t.jobs.c.next_attempt_at <= now),
            order_by=t.jobs.c.next_attempt_at,
            limit=limit,
            values={
                "next_attempt_at": lease_until,
                "claims": t.jobs.c.claims + 1,
                "updated_at": now,
            },
        )
        return sorted((job_from_row(row) for row in rows), key=lambda job: job.id)

    async def withdraw_unclaimed(self, job_id: int, *, at: dt.datetime, error: str) -> bool:
        """Fail a queued job that no worker has ever claimed; False if one has (or the job is no
        longer queued). One guarded UPDATE decides: on PostgreSQL it waits for a worker's claim
        in progress and then re-checks ``claims``; on SQLite writers take turns."""
        result = await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.status == _QUEUED, t.jobs.c.claims == 0)
            .values(status=JobStatus.FAILED.value, updated_at=at, last_error=error)
        )
        return result.rowcount == 1

    async def finish(
        self,
        job: JobRecord,
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
        outcome: JobOutcome | None = None,
    ) -> bool:
        """Mark a queued job done or failed; False if another worker already did."""
        return bool(
            await self.finish_many([job.id], status=status, at=at, error=error, outcome=outcome)
        )

    async def finish_many(
        self,
        job_ids: Sequence[int],
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
        outcome: JobOutcome | None = None,
    ) -> set[int]:
        """Mark queued jobs done or failed; returns the ids this call finished (another worker
        may have finished some first)."""
        if status is JobStatus.QUEUED:
            raise InvariantError("a job is finished as done or failed")
        if not job_ids:
            return set()
        values: dict[str, Any] = {"status": status.value, "updated_at": at, "last_error": error}
        if outcome is not None:
            values["outcome"] = outcome.value
        result = await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id.in_(sorted(set(job_ids))), t.jobs.c.status == _QUEUED)
            .values(values)
            .returning(t.jobs.c.id)
        )
        return {int(row[0]) for row in result}

    async def record_outcome(
        self, job_ids: Sequence[int], outcome: JobOutcome, *, at: dt.datetime
    ) -> None:
        """Keep what the outside world answered these jobs, whatever their status (a job that
        someone else finished first still had its answer)."""
        if not job_ids:
            return
        await self._connection.execute(
            update(t.jobs)
            .where(t.jobs.c.id.in_(sorted(set(job_ids))))
            .values(outcome=outcome.value, updated_at=at)
        )

    async def mark_failed(
        self,
        failures: Sequence[tuple[int, str]],
        *,
        at: dt.datetime,
        outcome: JobOutcome | None = None,
    ) -> None:
        """Jobs this transaction finished that turned out to fail, each ``(job id, why)``."""
        values: dict[str, Any] = {"status": JobStatus.FAILED.value, "updated_at": at}
        if outcome is not None:
            values["outcome"] = outcome.value
        await update_many(
            self._connection,
            t.jobs,
            [(job_id, {**values, "last_error": why}) for job_id, why in failures],
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

    async def for_subject(self, subject: JobSubject) -> list[JobRecord]:
        """Every job about ``subject``, oldest first (found through the unique constraint)."""
        rows = await self._connection.execute(
            select(t.jobs)
            .where(t.jobs.c.subject_kind == subject.kind.value, t.jobs.c.subject_id == subject.id)
            .order_by(t.jobs.c.id)
        )
        return [job_from_row(row) for row in rows]
