"""Jobs for the worker, in memory: enqueue, lease, finish, retry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.records import JobRecord, JobRetry, JobStatus


class MemoryJobRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def enqueue(self, *, kind: str, renewal_id: str, at: dt.datetime) -> None:
        await self.enqueue_many(kind=kind, renewal_ids=[renewal_id], at=at)

    async def enqueue_many(self, *, kind: str, renewal_ids: Sequence[str], at: dt.datetime) -> None:
        jobs = self._tables.jobs
        for renewal_id in renewal_ids:
            self._tables.require_renewal(renewal_id)
            if any(job.kind == kind and job.renewal_id == renewal_id for job in jobs.values()):
                raise unique_violation("jobs", (kind, renewal_id))
            job_id = self._tables.next_id()
            jobs[job_id] = JobRecord(
                id=job_id,
                kind=kind,
                renewal_id=renewal_id,
                status=JobStatus.QUEUED,
                attempts=0,
                claims=0,
                next_attempt_at=at,
                first_requested_at=at,
                last_error=None,
            )

    async def claim(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[JobRecord]:
        jobs = self._tables.jobs
        due = sorted(
            (
                job
                for job in jobs.values()
                if job.status is JobStatus.QUEUED and job.next_attempt_at <= now
            ),
            key=lambda job: (job.next_attempt_at, job.id),
        )[:limit]
        for job in due:
            jobs[job.id] = replace(job, next_attempt_at=lease_until, claims=job.claims + 1)
        return sorted((jobs[job.id] for job in due), key=lambda job: job.id)

    async def finish(
        self, job: JobRecord, *, status: JobStatus, at: dt.datetime, error: str | None = None
    ) -> bool:
        return bool(await self.finish_many([job.id], status=status, at=at, error=error))

    async def finish_many(
        self,
        job_ids: Sequence[int],
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
    ) -> set[int]:
        jobs = self._tables.jobs
        finished = set()
        for job_id in sorted(set(job_ids)):
            job = jobs.get(job_id)
            if job is not None and job.status is JobStatus.QUEUED:
                jobs[job_id] = replace(job, status=status, last_error=error)
                finished.add(job_id)
        return finished

    async def mark_failed(self, failures: Sequence[tuple[int, str]], *, at: dt.datetime) -> None:
        jobs = self._tables.jobs
        for job_id, why in failures:
            if job_id in jobs:
                jobs[job_id] = replace(jobs[job_id], status=JobStatus.FAILED, last_error=why)

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
        jobs = self._tables.jobs
        for retry in retries:
            job = jobs.get(retry.job_id)
            if job is not None and job.status is JobStatus.QUEUED:
                jobs[job.id] = replace(
                    job,
                    next_attempt_at=retry.next_attempt_at,
                    attempts=job.attempts + (1 if retry.failed else 0),
                    last_error=retry.error,
                )

    async def for_renewal(self, renewal_id: str) -> list[JobRecord]:
        return sorted(
            (job for job in self._tables.jobs.values() if job.renewal_id == renewal_id),
            key=lambda job: job.id,
        )
