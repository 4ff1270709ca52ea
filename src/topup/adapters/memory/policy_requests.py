"""Requests to apply a fleet-wide auto-renewal policy, in memory (one unit of work at a time:
a lease is the row's ``lease_until``)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.fleets import PolicyRequest, PolicyRequestStatus


class MemoryPolicyRequestRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add(self, request: PolicyRequest) -> bool:
        if request.id in self._tables.policy_requests:
            raise unique_violation("policy_requests.id", request.id)
        if request.organisation_id not in self._tables.organisations:
            raise unique_violation("policy_requests.organisation_id (foreign key)", request.id)
        if any(
            kept.organisation_id == request.organisation_id and not kept.finished
            for kept, _ in self._tables.policy_requests.values()
        ):
            return False
        self._tables.policy_requests[request.id] = (request, None)
        return True

    async def get(self, request_id: str) -> PolicyRequest | None:
        found = self._tables.policy_requests.get(request_id)
        return None if found is None else found[0]

    async def latest_of(self, organisation_id: str) -> PolicyRequest | None:
        mine = [
            request
            for request, _ in self._tables.policy_requests.values()
            if request.organisation_id == organisation_id
        ]
        return max(mine, key=lambda item: (item.created_at, item.id), default=None)

    async def lease(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[PolicyRequest]:
        due = sorted(
            (
                request
                for request, until in self._tables.policy_requests.values()
                if request.status is PolicyRequestStatus.RUNNING and (until is None or until <= now)
            ),
            key=lambda item: (item.created_at, item.id),
        )[:limit]
        for request in due:
            self._tables.policy_requests[request.id] = (request, lease_until)
        return due

    async def save_progress(
        self, request: PolicyRequest, *, reached_before: int, at: dt.datetime
    ) -> bool:
        found = self._tables.policy_requests.get(request.id)
        if found is None or found[0].finished or found[0].reached != reached_before:
            return False
        kept = dataclasses.replace(request, plans=found[0].plans, created_at=found[0].created_at)
        self._tables.policy_requests[request.id] = (kept, None)
        return True
