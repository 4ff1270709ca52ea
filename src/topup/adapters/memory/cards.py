"""Cards and their events, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InvariantError
from topup.domain.records import CardEvent
from topup.domain.renewal import RenewalStatus


class MemoryCardRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add(self, card: Card, *, at: dt.datetime) -> None:
        cards = self._tables.cards
        if card.id in cards:
            raise unique_violation("cards", card.id)
        for other in cards.values():
            if other.msisdn == card.msisdn or other.iccid == card.iccid:
                raise unique_violation("cards", (card.msisdn, card.iccid))
        cards[card.id] = card

    async def get(self, card_id: str, *, for_update: bool = False) -> Card | None:
        return self._tables.cards.get(card_id)

    async def get_many(
        self, card_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, Card]:
        cards = self._tables.cards
        return {card_id: cards[card_id] for card_id in sorted(set(card_ids)) if card_id in cards}

    async def by_numbers(self, *, msisdns: Sequence[str], iccids: Sequence[str]) -> list[Card]:
        wanted_msisdns, wanted_iccids = set(msisdns), set(iccids)
        return [
            card
            for card in self._tables.cards.values()
            if card.msisdn in wanted_msisdns or card.iccid in wanted_iccids
        ]

    async def by_number(
        self, *, msisdn: str | None = None, iccid: str | None = None
    ) -> Card | None:
        if msisdn is None and iccid is None:
            raise InvariantError("a card is looked up by msisdn or iccid")
        for card in self._tables.cards.values():
            if (msisdn is not None and card.msisdn == msisdn) or (
                msisdn is None and card.iccid == iccid
            ):
                return card
        return None

    async def save(self, card: Card, *, expected_version: int, at: dt.datetime) -> None:
        stored = self._tables.cards.get(card.id)
        if stored is None or stored.version != expected_version:
            raise InvariantError(f"card {card.id} changed under us (version {expected_version})")
        self._tables.cards[card.id] = card

    async def save_many(self, changes: Sequence[tuple[Card, int]], *, at: dt.datetime) -> None:
        cards = self._tables.cards
        for card, expected_version in changes:
            stored = cards.get(card.id)
            if stored is None or stored.version != expected_version:
                raise InvariantError("a card changed under us while its row was locked")
        for card, _ in changes:
            cards[card.id] = card

    async def list_page(self, *, limit: int, offset: int = 0) -> list[Card]:
        cards = sorted(self._tables.cards.values(), key=lambda card: card.msisdn)
        return cards[offset : offset + limit]

    async def due_for_lifecycle(
        self, *, now: dt.datetime, limit: int, grace_period_days: int
    ) -> list[str]:
        grace_ended = now - dt.timedelta(days=grace_period_days)
        activating = {
            renewal.card_id
            for renewal in self._tables.renewals.values()
            if renewal.status is RenewalStatus.ACTIVATING
        }
        prepaid, postpaid = [], []
        for card in self._tables.cards.values():
            if card.kind is CardKind.PREPAID and card.validity_end is not None:
                if (card.status is CardStatus.ACTIVE and card.validity_end <= now) or (
                    card.status is CardStatus.GRACE
                    and card.validity_end <= grace_ended
                    and card.id not in activating
                ):
                    prepaid.append(card.id)
            elif (
                card.kind is CardKind.POSTPAID
                and card.status is CardStatus.ACTIVE
                and card.bill_due.minor > 0
                and card.bill_due_date is not None
                and card.bill_due_date <= now
            ):
                postpaid.append(card.id)
        return (prepaid[:limit] + postpaid[:limit])[:limit]

    async def add_event(
        self, *, card_id: str, kind: str, at: dt.datetime, detail: dict[str, str | int]
    ) -> None:
        self._tables.require_card(card_id)
        self._tables.card_events.append((card_id, CardEvent(kind, at, dict(detail))))

    async def add_events(
        self, events: Sequence[tuple[str, str, dt.datetime, dict[str, str | int]]]
    ) -> None:
        for card_id, kind, at, detail in events:
            await self.add_event(card_id=card_id, kind=kind, at=at, detail=detail)

    async def lock_due_for_lifecycle(
        self, *, now: dt.datetime, limit: int, grace_period_days: int
    ) -> list[Card]:
        """Units of work run one at a time here: every due card is ours."""
        ids = await self.due_for_lifecycle(
            now=now, limit=limit, grace_period_days=grace_period_days
        )
        return [self._tables.cards[card_id] for card_id in ids]

    async def events(self, card_id: str, *, limit: int) -> list[CardEvent]:
        numbered = [
            (event.at, index, event)
            for index, (owner, event) in enumerate(self._tables.card_events)
            if owner == card_id
        ]
        numbered.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [event for _, _, event in numbered[:limit]]
