"""Renewals, their timelines and moves, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Unpack

from topup.adapters.memory.tables import Tables
from topup.domain.errors import InvariantError
from topup.domain.records import (
    PaymentRecord,
    RenewalChanges,
    RenewalMove,
    RenewalRecord,
    renewal_moved,
)
from topup.domain.renewal import TERMINAL_STATUSES, RenewalStatus, Transition, transition


class MemoryRenewalRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add_many(self, renewals: Sequence[RenewalRecord]) -> set[str]:
        """Like ``INSERT ... ON CONFLICT DO NOTHING``: a renewal whose id, idempotency key or
        receipt number is taken (before or earlier in this batch) is left out."""
        stored = self._tables.renewals
        keys = {renewal.idempotency_key for renewal in stored.values()}
        receipts = {renewal.receipt_number for renewal in stored.values()} - {None}
        inserted = set()
        for renewal in renewals:
            self._tables.require_card(renewal.card_id)
            if (
                renewal.id in stored
                or renewal.idempotency_key in keys
                or (renewal.receipt_number is not None and renewal.receipt_number in receipts)
            ):
                continue
            stored[renewal.id] = renewal
            keys.add(renewal.idempotency_key)
            if renewal.receipt_number is not None:
                receipts.add(renewal.receipt_number)
            inserted.add(renewal.id)
        return inserted

    async def get_many(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, RenewalRecord]:
        stored = self._tables.renewals
        return {key: stored[key] for key in sorted(set(renewal_ids)) if key in stored}

    async def with_payments(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, tuple[RenewalRecord, PaymentRecord, str]]:
        payments = {payment.renewal_id: payment for payment in self._tables.payments.values()}
        found = {}
        for renewal_id, renewal in (await self.get_many(renewal_ids)).items():
            if renewal_id in payments:
                card = self._tables.cards[renewal.card_id]
                found[renewal_id] = (renewal, payments[renewal_id], card.msisdn)
        return found

    async def by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, RenewalRecord]:
        wanted = set(keys)
        return {
            renewal.idempotency_key: renewal
            for renewal in self._tables.renewals.values()
            if renewal.idempotency_key in wanted
        }

    async def with_card_numbers(
        self, renewal_ids: Sequence[str]
    ) -> dict[str, tuple[RenewalRecord, str, str]]:
        found = {}
        for renewal_id, renewal in (await self.get_many(renewal_ids)).items():
            card = self._tables.cards[renewal.card_id]
            found[renewal_id] = (renewal, card.msisdn, card.iccid)
        return found

    async def move_many(self, moves: Sequence[RenewalMove], *, at: dt.datetime) -> None:
        if len({move.renewal.id for move in moves}) != len(moves):
            raise InvariantError("one renewal moved twice in one statement")
        changes = [
            (move, transition(move.renewal.status, move.to_status, at=at, reason=move.reason))
            for move in moves
        ]
        for move, _ in changes:
            stored = self._tables.renewals.get(move.renewal.id)
            if stored is None or stored.status is not move.renewal.status:
                raise InvariantError("a renewal changed status under us while its row was locked")
        for move, change in changes:
            self._write(move.renewal.id, change, move.values)

    async def get(self, renewal_id: str, *, for_update: bool = False) -> RenewalRecord | None:
        return self._tables.renewals.get(renewal_id)

    async def by_idempotency_key(self, key: str) -> RenewalRecord | None:
        return (await self.by_idempotency_keys([key])).get(key)

    async def move(
        self,
        renewal: RenewalRecord,
        to_status: RenewalStatus,
        *,
        at: dt.datetime,
        reason: str,
        **changes: Unpack[RenewalChanges],
    ) -> None:
        change = transition(renewal.status, to_status, at=at, reason=reason)
        stored = self._tables.renewals.get(renewal.id)
        if stored is None or stored.status is not renewal.status:
            raise InvariantError(f"renewal {renewal.id} left {renewal.status.value} under us")
        self._write(renewal.id, change, changes)

    def _write(self, renewal_id: str, change: Transition, changes: RenewalChanges) -> None:
        stored = self._tables.renewals[renewal_id]
        self._tables.renewals[renewal_id] = renewal_moved(
            stored, change.to_status, changes, at=change.at
        )
        self._tables.renewal_events.append((renewal_id, change))

    async def add_event(self, renewal_id: str, change: Transition) -> None:
        await self.add_events([(renewal_id, change)])

    async def add_events(self, changes: Sequence[tuple[str, Transition]]) -> None:
        for renewal_id, change in changes:
            self._tables.require_renewal(renewal_id)
            self._tables.renewal_events.append((renewal_id, change))

    async def timelines(self, renewal_ids: Sequence[str]) -> dict[str, list[Transition]]:
        wanted = set(renewal_ids)
        found: dict[str, list[Transition]] = {}
        for renewal_id, change in self._tables.renewal_events:
            if renewal_id in wanted:
                found.setdefault(renewal_id, []).append(change)
        return found

    async def for_card(
        self, card_id: str, *, limit: int, before: tuple[dt.datetime, str] | None = None
    ) -> list[RenewalRecord]:
        renewals = [
            renewal
            for renewal in self._tables.renewals.values()
            if renewal.card_id == card_id
            and (before is None or (renewal.created_at, renewal.id) < before)
        ]
        renewals.sort(key=lambda renewal: (renewal.created_at, renewal.id), reverse=True)
        return renewals[:limit]

    async def has_activating(self, card_id: str) -> bool:
        return any(
            renewal.card_id == card_id and renewal.status is RenewalStatus.ACTIVATING
            for renewal in self._tables.renewals.values()
        )

    async def open_for_card(self, card_id: str, *, kind: str) -> RenewalRecord | None:
        for renewal in self._tables.renewals.values():
            if (
                renewal.card_id == card_id
                and renewal.kind.value == kind
                and renewal.status not in TERMINAL_STATUSES
            ):
                return renewal
        return None
