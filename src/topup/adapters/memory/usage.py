"""Usage records, usage states and signed deliveries, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables
from topup.domain.cards import Card
from topup.domain.errors import InvariantError
from topup.domain.renewal import RenewalStatus
from topup.domain.usage import InsertedUsage, NetworkChange, UsageRecord, UsageState


class MemoryUsageRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def card_ids(self, *, msisdns: Sequence[str], iccids: Sequence[str]) -> dict[str, str]:
        wanted_msisdns, wanted_iccids = set(msisdns), set(iccids)
        found: dict[str, str] = {}
        for card in self._tables.cards.values():
            if card.msisdn in wanted_msisdns or card.iccid in wanted_iccids:
                found[card.msisdn] = card.id
                found[card.iccid] = card.id
        return found

    async def lock_cards(self, card_ids: Sequence[str]) -> dict[str, Card]:
        cards = self._tables.cards
        return {card_id: cards[card_id] for card_id in sorted(set(card_ids)) if card_id in cards}

    async def known_record_ids(self, record_ids: Sequence[str]) -> set[str]:
        stored = self._tables.usage_records
        return {record_id for record_id in record_ids if record_id in stored}

    async def insert_records(self, records: Sequence[UsageRecord]) -> list[InsertedUsage]:
        stored = self._tables.usage_records
        sums: dict[str, list[int]] = {}
        for record in records:
            record_id, card_id, _, data_used_mb, counted, _ = record
            if record_id in stored:
                continue
            self._tables.require_card(card_id)
            stored[record_id] = (record, counted)
            figures = sums.setdefault(card_id, [0, 0, 0])
            figures[0] += 1
            if counted:
                figures[2] += data_used_mb
            else:
                figures[1] += 1
        return [InsertedUsage(card_id, *figures) for card_id, figures in sums.items()]

    async def debit_quotas(
        self, debits: Sequence[tuple[str, int, int]], *, at: dt.datetime
    ) -> None:
        cards = self._tables.cards
        for card_id, quota, version in debits:
            card = cards.get(card_id)
            if card is None or card.version != version:
                raise InvariantError("a card changed under us while its row was locked")
            cards[card_id] = replace(card, data_quota_mb=quota, version=version + 1)

    async def period_starts(self, card_ids: Sequence[str]) -> dict[str, dt.datetime]:
        wanted = set(card_ids)
        starts: dict[str, dt.datetime] = {}
        for renewal in self._tables.renewals.values():
            if (
                renewal.card_id in wanted
                and renewal.status is RenewalStatus.COMPLETED
                and renewal.validity_days > 0
                and renewal.completed_at is not None
            ):
                earlier = starts.get(renewal.card_id)
                if earlier is None or renewal.completed_at > earlier:
                    starts[renewal.card_id] = renewal.completed_at
        return starts

    async def states(self, card_ids: Sequence[str]) -> dict[str, UsageState]:
        states = self._tables.card_usage
        return {card_id: states[card_id][0] for card_id in set(card_ids) if card_id in states}

    async def save_states(self, states: Sequence[UsageState], *, at: dt.datetime) -> None:
        for state in states:
            self._tables.require_card(state.card_id)
            self._tables.card_usage[state.card_id] = (state, at if state.network_pending else None)

    async def lift_bars(self, *, limit: int) -> int:
        lifted = 0
        for card_id, (state, next_at) in list(self._tables.card_usage.items()):
            if lifted >= limit:
                break
            card = self._tables.cards.get(card_id)
            if state.data_barred and card is not None and card.data_quota_mb > 0:
                unbarred = state._replace(data_barred=False, network_pending=True)
                self._tables.card_usage[card_id] = (
                    unbarred,
                    next_at or dt.datetime.min.replace(tzinfo=dt.UTC),
                )
                lifted += 1
        return lifted

    async def claim_network_changes(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[NetworkChange]:
        claimed: list[NetworkChange] = []
        for card_id in sorted(self._tables.card_usage):
            state, next_at = self._tables.card_usage[card_id]
            if len(claimed) >= limit:
                break
            if state.network_pending and next_at is not None and next_at <= now:
                self._tables.card_usage[card_id] = (state, lease_until)
                card = self._tables.cards[card_id]
                attempts = self._tables.usage_attempts.get(card_id, 0) + 1
                self._tables.usage_attempts[card_id] = attempts
                claimed.append(NetworkChange(state, card.msisdn, card.iccid, attempts))
        return claimed

    async def network_told(self, card_id: str, *, data_barred: bool) -> None:
        found = self._tables.card_usage.get(card_id)
        if found is not None and found[0].data_barred == data_barred:
            self._tables.card_usage[card_id] = (found[0]._replace(network_pending=False), None)
            self._tables.usage_attempts.pop(card_id, None)

    async def network_failed(self, card_id: str, *, next_at: dt.datetime) -> None:
        found = self._tables.card_usage.get(card_id)
        if found is not None and found[0].network_pending:
            self._tables.card_usage[card_id] = (found[0], next_at)

    async def first_delivery(self, signature: str, *, at: dt.datetime) -> bool:
        if signature in self._tables.usage_deliveries:
            return False
        self._tables.usage_deliveries[signature] = at
        return True

    async def forget_deliveries(self, *, received_before: dt.datetime, limit: int) -> int:
        old = [
            signature
            for signature, at in self._tables.usage_deliveries.items()
            if at < received_before
        ][:limit]
        for signature in old:
            del self._tables.usage_deliveries[signature]
        return len(old)
