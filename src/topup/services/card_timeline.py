"""A linked card's timeline for its account (the portal): what happened to the card itself, as
its card events (``topup.domain.card_events``), newest first, with the card read now.

Only a card linked to the account is read (its links are looked up first), so the id of
another's card finds nothing (``card_unknown``)."""

from __future__ import annotations

from dataclasses import dataclass

from topup.domain.records import CardEvent
from topup.services.account_history import LINKED_CARDS_MAX
from topup.services.context import Services
from topup.services.queries import card_summary
from topup.services.renewals.reads import card_unknown
from topup.services.views import CardView

CARD_TIMELINE_EVENTS_MAX = 50  # events shown on one card's timeline (the latest)


@dataclass(frozen=True)
class CardTimeline:
    card: CardView
    events: list[CardEvent]  # newest first
    more: bool  # older events were left out


async def card_timeline(services: Services, account_id: str, card_id: str) -> CardTimeline:
    async with services.unit_of_work() as uow:
        linked = await uow.accounts.linked_cards(account_id, limit=LINKED_CARDS_MAX)
        card = next((each for each in linked if each.id == card_id), None)
        if card is None:
            raise card_unknown()
        events = await uow.cards.events(card.id, limit=CARD_TIMELINE_EVENTS_MAX + 1)
    return CardTimeline(
        card=card_summary(card, services),
        events=events[:CARD_TIMELINE_EVENTS_MAX],
        more=len(events) > CARD_TIMELINE_EVENTS_MAX,
    )
