"""Bulk renewal runs and their lines, in memory (one unit of work at a time: a lease is simply
the row's ``lease_until``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.fleets import (
    BulkLine,
    BulkLineOutcome,
    BulkLineStatus,
    BulkRun,
    BulkRunStatus,
)


class MemoryBulkRenewalRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add_run(self, run: BulkRun, lines: Sequence[BulkLine]) -> bool:
        if run.id in self._tables.bulk_runs:
            return False
        if run.organisation_id not in self._tables.organisations:
            raise unique_violation("bulk_runs.organisation_id (foreign key)", run.organisation_id)
        if len({line.line_no for line in lines}) != len(lines):
            raise unique_violation("bulk_lines (run_id, line_no)", run.id)
        self._tables.bulk_runs[run.id] = run
        for line in lines:
            line_id = self._tables.next_id()
            self._tables.bulk_lines[line_id] = (
                dataclasses.replace(line, id=line_id, run_id=run.id),
                None,
            )
        return True

    async def get_run(self, run_id: str) -> BulkRun | None:
        return self._tables.bulk_runs.get(run_id)

    async def runs_of(self, organisation_id: str, *, limit: int) -> list[BulkRun]:
        found = [r for r in self._tables.bulk_runs.values() if r.organisation_id == organisation_id]
        found.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        return found[:limit]

    async def lines(
        self,
        run_id: str,
        *,
        limit: int,
        after_line_no: int = 0,
        statuses: Sequence[BulkLineStatus] = (),
    ) -> list[BulkLine]:
        found = [
            line
            for line, _ in self._tables.bulk_lines.values()
            if line.run_id == run_id
            and line.line_no > after_line_no
            and (not statuses or line.status in statuses)
        ]
        found.sort(key=lambda line: line.line_no)
        return found[:limit]

    async def counts(self, run_id: str) -> dict[BulkLineStatus, int]:
        return dict(
            Counter(
                line.status for line, _ in self._tables.bulk_lines.values() if line.run_id == run_id
            )
        )

    async def lease_lines(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[BulkLine]:
        leased: list[BulkLine] = []
        for line_id in sorted(self._tables.bulk_lines):
            if len(leased) >= limit:
                break
            line, until = self._tables.bulk_lines[line_id]
            due = line.status is BulkLineStatus.PENDING or (
                line.status in (BulkLineStatus.LEASED, BulkLineStatus.WAITING)
                and until is not None
                and until <= now
            )
            if not due:
                continue
            taken = dataclasses.replace(
                line, status=BulkLineStatus.LEASED, attempts=line.attempts + 1
            )
            self._tables.bulk_lines[line_id] = (taken, lease_until)
            leased.append(taken)
        return leased

    async def record_outcomes(
        self, outcomes: Sequence[BulkLineOutcome], *, at: dt.datetime
    ) -> None:
        for outcome in outcomes:
            found = self._tables.bulk_lines.get(outcome.line_id)
            if found is None:
                continue
            line = dataclasses.replace(
                found[0],
                status=outcome.status,
                renewal_id=outcome.renewal_id,
                receipt_number=outcome.receipt_number,
                error_code=outcome.error_code,
                error_params=dict(outcome.error_params),
            )
            self._tables.bulk_lines[outcome.line_id] = (line, outcome.lease_until)

    async def finish_runs(self, run_ids: Sequence[str], *, at: dt.datetime) -> list[str]:
        finished = []
        for run_id in sorted(set(run_ids)):
            run = self._tables.bulk_runs.get(run_id)
            if run is None or run.status is not BulkRunStatus.RUNNING:
                continue
            if any(
                line.run_id == run_id and line.status.is_open
                for line, _ in self._tables.bulk_lines.values()
            ):
                continue
            self._tables.bulk_runs[run_id] = dataclasses.replace(
                run, status=BulkRunStatus.FINISHED, finished_at=at
            )
            finished.append(run_id)
        return finished

    async def renewed_recently(
        self, organisation_id: str, card_ids: Sequence[str], *, since: dt.datetime
    ) -> dict[str, dt.datetime]:
        wanted = set(card_ids)
        found: dict[str, dt.datetime] = {}
        for line, _ in self._tables.bulk_lines.values():
            run = self._tables.bulk_runs.get(line.run_id)
            if (
                line.card_id not in wanted
                or line.card_id is None
                or run is None
                or run.organisation_id != organisation_id
                or run.created_at < since
                or line.status in (BulkLineStatus.FAILED, BulkLineStatus.REJECTED)
            ):
                continue
            found[line.card_id] = max(found.get(line.card_id, run.created_at), run.created_at)
        return found
