"""Postpaid bills: issuing one is a ledger entry and a change to the card, in one transaction."""

from __future__ import annotations

import datetime as dt

from topup.domain import ledger
from topup.domain.card_events import CardEventKind
from topup.domain.cards import Card, issue_bill
from topup.domain.errors import NotFoundError
from topup.domain.money import Money
from topup.services.context import Services


async def issue_postpaid_bill(
    services: Services, *, card_id: str, amount: Money, due_date: dt.datetime
) -> Card:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        card: Card | None = await uow.cards.get(card_id, for_update=True)
        if card is None:
            raise NotFoundError(f"no card {card_id}", code="card_unknown")
        billed = issue_bill(card, amount=amount, due_date=due_date)
        await uow.cards.save(billed, expected_version=card.version, at=now)
        await uow.ledger.record(
            ledger.bill(
                card_id=card.id, bill_id=f"{card.id}:{now.date().isoformat()}", amount=amount
            ),
            at=now,
        )
        await uow.cards.add_event(
            card_id=card.id,
            kind=CardEventKind.BILL_ISSUED.value,
            at=now,
            detail={"amount_minor": amount.minor, "due_date": due_date.isoformat()},
        )
        await uow.commit()
        return billed
