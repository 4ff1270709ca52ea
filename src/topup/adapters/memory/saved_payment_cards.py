"""Saved payment cards, in memory."""

from __future__ import annotations

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.saved_payment_cards import SavedPaymentCard


class MemorySavedPaymentCardRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add(self, card: SavedPaymentCard) -> bool:
        saved = self._tables.saved_payment_cards
        if card.account_id not in self._tables.accounts:
            raise unique_violation("saved_payment_cards.account_id (foreign key)", card.account_id)
        if any(
            (other.account_id, other.fingerprint) == (card.account_id, card.fingerprint)
            for other in saved.values()
        ):
            return False  # ON CONFLICT (account_id, fingerprint) DO NOTHING
        if card.id in saved:
            raise unique_violation("saved_payment_cards", card.id)
        saved[card.id] = card
        return True

    async def of_account(self, account_id: str, *, limit: int) -> list[SavedPaymentCard]:
        found = [c for c in self._tables.saved_payment_cards.values() if c.account_id == account_id]
        found.sort(key=lambda card: (card.created_at, card.id))
        return found[:limit]

    async def get(self, account_id: str, saved_id: str) -> SavedPaymentCard | None:
        card = self._tables.saved_payment_cards.get(saved_id)
        return card if card is not None and card.account_id == account_id else None

    async def count(self, account_id: str) -> int:
        saved = self._tables.saved_payment_cards.values()
        return sum(1 for card in saved if card.account_id == account_id)

    async def remove(self, account_id: str, saved_id: str) -> bool:
        if await self.get(account_id, saved_id) is None:
            return False
        del self._tables.saved_payment_cards[saved_id]
        return True
