"""Requests to apply a fleet-wide auto-renewal policy (table ``policy_requests``): one running
per organisation (a unique key on ``running_organisation_id``), leased by workers with
``FOR UPDATE SKIP LOCKED``, their progress written only if nobody moved them on meanwhile."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert, lease_due
from topup.domain.errors import InvariantError
from topup.domain.fleets import PolicyRefusal, PolicyRequest, PolicyRequestStatus


def _refusals_text(refusals: tuple[PolicyRefusal, ...]) -> str:
    return json.dumps(
        [[item.msisdn, item.code, dict(item.params)] for item in refusals],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _refusals_of(text: str) -> tuple[PolicyRefusal, ...]:
    loaded = json.loads(text or "[]")
    return tuple(
        PolicyRefusal(str(msisdn), str(code), {str(k): str(v) for k, v in dict(params).items()})
        for msisdn, code, params in loaded
    )


def _request(row: Row[Any]) -> PolicyRequest:
    m = row._mapping
    try:
        status = PolicyRequestStatus(m["status"])
    except ValueError:
        raise InvariantError(f"policy request {m['id']} has an unknown status") from None
    return PolicyRequest(
        id=m["id"],
        organisation_id=m["organisation_id"],
        requested_by=m["requested_by"],
        plans={str(k): str(v) for k, v in json.loads(m["plans"]).items()},
        status=status,
        cards_total=int(m["cards_total"]),
        created_at=m["created_at"],
        reached=int(m["reached"]),
        reached_card_id=m["reached_card_id"],
        applied=int(m["applied"]),
        already=int(m["already"]),
        left_alone=int(m["left_alone"]),
        refused=int(m["refused"]),
        refusals=_refusals_of(m["refusals"]),
        error_code=m["error_code"],
        finished_at=m["finished_at"],
    )


def _counts(request: PolicyRequest) -> dict[str, Any]:
    return {
        "status": request.status.value,
        "running_organisation_id": None if request.finished else request.organisation_id,
        "reached": request.reached,
        "reached_card_id": request.reached_card_id,
        "applied": request.applied,
        "already": request.already,
        "left_alone": request.left_alone,
        "refused": request.refused,
        "refusals": _refusals_text(request.refusals),
        "error_code": request.error_code,
        "finished_at": request.finished_at,
    }


class PolicyRequestRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, request: PolicyRequest) -> bool:
        table = t.policy_requests
        inserted = await self._connection.execute(
            dialect_insert(self._connection, table)
            .values(
                id=request.id,
                organisation_id=request.organisation_id,
                requested_by=request.requested_by,
                plans=json.dumps(dict(request.plans), separators=(",", ":")),
                cards_total=request.cards_total,
                lease_until=None,
                created_at=request.created_at,
                updated_at=request.created_at,
                **_counts(request),
            )
            # Another request of the organisation runs: this one is not written.
            .on_conflict_do_nothing(index_elements=[table.c.running_organisation_id])
            .returning(table.c.id)
        )
        return inserted.first() is not None

    async def get(self, request_id: str) -> PolicyRequest | None:
        table = t.policy_requests
        row = (
            await self._connection.execute(select(table).where(table.c.id == request_id))
        ).first()
        return None if row is None else _request(row)

    async def latest_of(self, organisation_id: str) -> PolicyRequest | None:
        table = t.policy_requests
        row = (
            await self._connection.execute(
                select(table)
                .where(table.c.organisation_id == organisation_id)
                .order_by(table.c.created_at.desc(), table.c.id.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else _request(row)

    async def lease(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[PolicyRequest]:
        table = t.policy_requests
        due = and_(
            table.c.status == PolicyRequestStatus.RUNNING.value,
            or_(table.c.lease_until.is_(None), table.c.lease_until <= now),
        )
        rows = await lease_due(
            self._connection,
            table,
            due,
            order_by=table.c.created_at,
            limit=limit,
            values={"lease_until": lease_until, "updated_at": now},
        )
        return sorted((_request(row) for row in rows), key=lambda item: item.created_at)

    async def save_progress(
        self, request: PolicyRequest, *, reached_before: int, at: dt.datetime
    ) -> bool:
        table = t.policy_requests
        result = await self._connection.execute(
            update(table)
            .where(
                table.c.id == request.id,
                table.c.status == PolicyRequestStatus.RUNNING.value,
                table.c.reached == reached_before,
            )
            .values(lease_until=None, updated_at=at, **_counts(request))
        )
        return int(result.rowcount) == 1
