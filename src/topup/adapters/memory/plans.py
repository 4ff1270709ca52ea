"""Plans on sale, in memory."""

from __future__ import annotations

from collections.abc import Sequence

from topup.adapters.memory.tables import Tables
from topup.domain.plans import Plan


class MemoryPlanRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def upsert(self, plan: Plan) -> None:
        self._tables.plans[plan.code] = plan

    async def get(self, code: str) -> Plan | None:
        return self._tables.plans.get(code)

    async def get_many(self, codes: Sequence[str]) -> dict[str, Plan]:
        plans = self._tables.plans
        return {code: plans[code] for code in set(codes) if code in plans}

    async def list_all(self, *, limit: int) -> list[Plan]:
        return sorted(self._tables.plans.values(), key=lambda plan: plan.code)[:limit]
