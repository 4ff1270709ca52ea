"""Plans on sale: rows to ``Plan`` and back. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert, many
from topup.domain.cards import CardKind
from topup.domain.money import Money
from topup.domain.plans import Plan, PlanKind

_PLANS_BY_CODE = select(t.plans).where(t.plans.c.code.in_(many()))


def plan_from_row(row: Row[Any]) -> Plan:
    m = row._mapping
    return Plan(
        code=m["code"],
        names=dict(m["names"]),
        kind=PlanKind(m["kind"]),
        price=Money(int(m["price_minor"]), m["currency"]),
        data_quota_mb=int(m["data_quota_mb"]),
        validity_days=int(m["validity_days"]),
        card_kinds=frozenset(CardKind(kind) for kind in m["card_kinds"]),
        channels=frozenset(m["channels"]),
        active_from=m["active_from"],
        active_until=m["active_until"],
    )


class PlanRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def upsert(self, plan: Plan) -> None:
        values = {
            "code": plan.code,
            "names": plan.names,
            "kind": plan.kind.value,
            "price_minor": plan.price.minor,
            "currency": plan.price.currency,
            "data_quota_mb": plan.data_quota_mb,
            "validity_days": plan.validity_days,
            "card_kinds": sorted(kind.value for kind in plan.card_kinds),
            "channels": sorted(plan.channels),
            "active_from": plan.active_from,
            "active_until": plan.active_until,
        }
        statement = dialect_insert(self._connection, t.plans).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[t.plans.c.code],
            set_={key: value for key, value in values.items() if key != "code"},
        )
        await self._connection.execute(statement)

    async def get(self, code: str) -> Plan | None:
        row = (
            await self._connection.execute(select(t.plans).where(t.plans.c.code == code))
        ).first()
        return None if row is None else plan_from_row(row)

    async def get_many(self, codes: Sequence[str]) -> dict[str, Plan]:
        if not codes:
            return {}
        rows = await self._connection.execute(_PLANS_BY_CODE, {"ids": sorted(set(codes))})
        return {row.code: plan_from_row(row) for row in rows}

    async def list_all(self, *, limit: int) -> list[Plan]:
        rows = await self._connection.execute(select(t.plans).order_by(t.plans.c.code).limit(limit))
        return [plan_from_row(row) for row in rows]
