"""Jobs for the worker, each about a subject, in memory: enqueue, lease, withdraw, finish,
retry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.errors import InvariantError
from topup.domain.records import JobKind, JobOutcome, JobRecord, JobRetry, JobStatus, JobSubject


class MemoryJobRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

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
        jobs = self._tables.jobs
        for subject in subjects:
            if any(job.kind is kind and job.subject == subject for job in jobs.values()):
                raise unique_violation("jobs", (subject, kind.value))
            job_id = self._tables.next_id()
            jobs[job_id] = JobRecord(
                id=job_id,
                kind=kind,
                subject=subject,
                status=JobStatus.QUEUED,
                attempts=0,
                claims=0,
                next_attempt_at=at,
                first_requested_at=at,
                last_error=None,
                reason=reason,
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

    async def withdraw_unclaimed(self, job_id: int, *, at: dt.datetime, error: str) -> bool:
        job = self._tables.jobs.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED or job.claims != 0:
            return False
        self._tables.jobs[job_id] = replace(job, status=JobStatus.FAILED, last_error=error)
        return True

    async def finish(
        self,
        job: JobRecord,
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
        outcome: JobOutcome | None = None,
    ) -> bool:
        finished = await self.finish_many(
            [job.id], status=status, at=at, error=error, outcome=outcome
        )
        return bool(finished)

    async def finish_many(
        self,
        job_ids: Sequence[int],
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
        outcome: JobOutcome | None = None,
    ) -> set[int]:
        if status is JobStatus.QUEUED:
            raise InvariantError("a job is finished as done or failed")
        jobs = self._tables.jobs
        finished = set()
        for job_id in sorted(set(job_ids)):
            job = jobs.get(job_id)
            if job is not None and job.status is JobStatus.QUEUED:
                jobs[job_id] = replace(
                    job,
                    status=status,
                    last_error=error,
                    outcome=job.outcome if outcome is None else outcome,
                )
                finished.add(job_id)
        return finished

    async def record_outcome(
        self, job_ids: Sequence[int], outcome: JobOutcome, *, at: dt.datetime
    ) -> None:
        jobs = self._tables.jobs
        for job_id in set(job_ids):
            if job_id in jobs:
                jobs[job_id] = replace(jobs[job_id], outcome=outcome)

    async def mark_failed(
        self,
        failures: Sequence[tuple[int, str]],
        *,
        at: dt.datetime,
        outcome: JobOutcome | None = None,
    ) -> None:
        jobs = self._tables.jobs
        for job_id, why in failures:
            job = jobs.get(job_id)
            if job is not None:
                jobs[job_id] = replace(
                    job,
                    status=JobStatus.FAILED,
                    last_error=why,
                    outcome=job.outcome if outcome is None else outcome,
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

    async def for_subject(self, subject: JobSubject) -> list[JobRecord]:
        return sorted(
            (job for job in self._tables.jobs.values() if job.subject == subject),
            key=lambda job: job.id,
        )
