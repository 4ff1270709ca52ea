"""Bulk renewal runs and their lines: a durable queue that workers lease lines from (FOR UPDATE
SKIP LOCKED on PostgreSQL). Never commits."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert, lease_due, update_rows
from topup.domain.errors import InvariantError
from topup.domain.fleets import (
    BulkLine,
    BulkLineOutcome,
    BulkLineStatus,
    BulkRun,
    BulkRunStatus,
)
from topup.domain.money import Money

_OPEN = [
    BulkLineStatus.PENDING.value,
    BulkLineStatus.LEASED.value,
    BulkLineStatus.WAITING.value,
]
# A line that renews (or renewed) its card: a later upload leaves the card out.
_RENEWING = [*_OPEN, BulkLineStatus.SUCCEEDED.value]


def _run(row: Row[Any]) -> BulkRun:
    m = row._mapping
    return BulkRun(
        id=m["id"],
        organisation_id=m["organisation_id"],
        created_by=m["created_by"],
        status=BulkRunStatus(m["status"]),
        lines_total=int(m["lines_total"]),
        total=Money(int(m["total_minor"]), m["currency"]),
        generation=int(m["generation"]),
        retry_of=m["retry_of"],
        created_at=m["created_at"],
        finished_at=m["finished_at"],
    )


ERROR_PARAMS_LENGTH_MAX = 1200  # the column's characters


def _params_text(params: Mapping[str, str]) -> str | None:
    """JSON text of a line's error params, dropping the last ones until it fits the column."""
    items = sorted(params.items())
    while items:
        text = json.dumps(dict(items), ensure_ascii=False, separators=(",", ":"))
        if len(text) <= ERROR_PARAMS_LENGTH_MAX:
            return text
        items.pop()
    return None


def _params_of(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(key): str(value) for key, value in loaded.items()}


def _line(row: Row[Any]) -> BulkLine:
    m = row._mapping
    try:
        status = BulkLineStatus(m["status"])
    except ValueError:
        raise InvariantError(f"bulk line {m['id']} has an unknown status {m['status']!r}") from None
    return BulkLine(
        id=int(m["id"]),
        run_id=m["run_id"],
        line_no=int(m["line_no"]),
        number=m["number"],
        card_id=m["card_id"],
        plan_code=m["plan_code"],
        amount=Money(int(m["amount_minor"]), m["currency"]),
        idempotency_key=m["idempotency_key"],
        status=status,
        renewal_id=m["renewal_id"],
        receipt_number=m["receipt_number"],
        error_code=m["error_code"],
        attempts=int(m["attempts"]),
        error_params=_params_of(m["error_params"]),
    )


class BulkRenewalRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_run(self, run: BulkRun, lines: Sequence[BulkLine]) -> bool:
        inserted = await self._connection.execute(
            dialect_insert(self._connection, t.bulk_runs)
            .values(
                id=run.id,
                organisation_id=run.organisation_id,
                created_by=run.created_by,
                status=run.status.value,
                lines_total=run.lines_total,
                total_minor=run.total.minor,
                currency=run.total.currency,
                generation=run.generation,
                retry_of=run.retry_of,
                created_at=run.created_at,
                finished_at=run.finished_at,
            )
            # A second request with the same run id waits for the first's commit, then adds
            # nothing (a double click on "Start").
            .on_conflict_do_nothing(index_elements=[t.bulk_runs.c.id])
            .returning(t.bulk_runs.c.id)
        )
        if inserted.first() is None:
            return False
        if lines:
            await self._connection.execute(
                t.bulk_lines.insert(),
                [
                    {
                        "run_id": run.id,
                        "line_no": line.line_no,
                        "number": line.number,
                        "card_id": line.card_id,
                        "plan_code": line.plan_code,
                        "amount_minor": line.amount.minor,
                        "currency": line.amount.currency,
                        "idempotency_key": line.idempotency_key,
                        "status": line.status.value,
                        "renewal_id": line.renewal_id,
                        "receipt_number": line.receipt_number,
                        "error_code": line.error_code,
                        "error_params": _params_text(line.error_params),
                        "attempts": line.attempts,
                        "lease_until": None,
                        "updated_at": run.created_at,
                    }
                    for line in lines
                ],
            )
        return True

    async def get_run(self, run_id: str) -> BulkRun | None:
        row = (
            await self._connection.execute(select(t.bulk_runs).where(t.bulk_runs.c.id == run_id))
        ).first()
        return None if row is None else _run(row)

    async def runs_of(self, organisation_id: str, *, limit: int) -> list[BulkRun]:
        runs = t.bulk_runs
        rows = await self._connection.execute(
            select(runs)
            .where(runs.c.organisation_id == organisation_id)
            .order_by(runs.c.created_at.desc(), runs.c.id)
            .limit(limit)
        )
        return [_run(row) for row in rows]

    async def lines(
        self,
        run_id: str,
        *,
        limit: int,
        after_line_no: int = 0,
        statuses: Sequence[BulkLineStatus] = (),
    ) -> list[BulkLine]:
        lines = t.bulk_lines
        query = select(lines).where(lines.c.run_id == run_id, lines.c.line_no > after_line_no)
        if statuses:
            query = query.where(lines.c.status.in_([status.value for status in statuses]))
        rows = await self._connection.execute(query.order_by(lines.c.line_no).limit(limit))
        return [_line(row) for row in rows]

    async def counts(self, run_id: str) -> dict[BulkLineStatus, int]:
        lines = t.bulk_lines
        rows = await self._connection.execute(
            select(lines.c.status, func.count())
            .where(lines.c.run_id == run_id)
            .group_by(lines.c.status)
        )
        return {BulkLineStatus(row[0]): int(row[1]) for row in rows}

    async def lease_lines(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[BulkLine]:
        lines = t.bulk_lines
        due = or_(
            lines.c.status == BulkLineStatus.PENDING.value,
            and_(
                lines.c.status.in_([BulkLineStatus.LEASED.value, BulkLineStatus.WAITING.value]),
                lines.c.lease_until <= now,
            ),
        )
        rows = await lease_due(
            self._connection,
            lines,
            due,
            order_by=lines.c.id,
            limit=limit,
            values={
                "status": BulkLineStatus.LEASED.value,
                "lease_until": lease_until,
                "attempts": lines.c.attempts + 1,
                "updated_at": now,
            },
        )
        return sorted((_line(row) for row in rows), key=lambda line: line.id)

    async def record_outcomes(
        self, outcomes: Sequence[BulkLineOutcome], *, at: dt.datetime
    ) -> None:
        await update_rows(
            self._connection,
            t.bulk_lines,
            [
                {
                    "line_id": outcome.line_id,
                    "status": outcome.status.value,
                    "renewal_id": outcome.renewal_id,
                    "receipt_number": outcome.receipt_number,
                    "error_code": outcome.error_code,
                    "error_params": _params_text(outcome.error_params),
                    "lease_until": outcome.lease_until,
                    "updated_at": at,
                }
                for outcome in outcomes
            ],
            match=(("id", "line_id"),),
            columns=(
                "status",
                "renewal_id",
                "receipt_number",
                "error_code",
                "error_params",
                "lease_until",
                "updated_at",
            ),
        )

    async def finish_runs(self, run_ids: Sequence[str], *, at: dt.datetime) -> list[str]:
        if not run_ids:
            return []
        runs, lines = t.bulk_runs, t.bulk_lines
        still_open = exists().where(lines.c.run_id == runs.c.id, lines.c.status.in_(_OPEN))
        result = await self._connection.execute(
            update(runs)
            .where(
                runs.c.id.in_(sorted(set(run_ids))),
                runs.c.status == BulkRunStatus.RUNNING.value,
                ~still_open,
            )
            .values(status=BulkRunStatus.FINISHED.value, finished_at=at)
            .returning(runs.c.id)
        )
        return [row[0] for row in result]

    async def renewed_recently(
        self, organisation_id: str, card_ids: Sequence[str], *, since: dt.datetime
    ) -> dict[str, dt.datetime]:
        if not card_ids:
            return {}
        runs, lines = t.bulk_runs, t.bulk_lines
        rows = await self._connection.execute(
            select(lines.c.card_id, func.max(runs.c.created_at))
            .select_from(lines.join(runs, runs.c.id == lines.c.run_id))
            .where(
                lines.c.card_id.in_(sorted(set(card_ids))),
                lines.c.status.in_(_RENEWING),
                runs.c.organisation_id == organisation_id,
                runs.c.created_at >= since,
            )
            .group_by(lines.c.card_id)
        )
        return {row[0]: row[1] for row in rows}
