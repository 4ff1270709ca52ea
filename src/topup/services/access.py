"""Who may see what (object-level authorisation). A card, renewal or receipt that the caller may
not see is answered exactly as one that does not exist, so that nobody learns which exist."""

from __future__ import annotations

from topup.domain.callers import Caller, CallerKind
from topup.domain.cards import Card
from topup.domain.errors import NotFoundError
from topup.ports import UnitOfWork
from topup.services.context import Services
from topup.services.renewals import find_card


def card_not_found() -> NotFoundError:
    """The same answer for a card that does not exist and one that is not the caller's."""
    return NotFoundError(
        "no card with this number is registered with us; check the number on your receipt "
        "or SIM carrier",
        code="card_unknown",
        field="card_number",
    )


async def may_see_card(uow: UnitOfWork, caller: Caller, card_id: str) -> bool:
    """Staff see every card; an account sees the cards it has linked; nobody else any."""
    if caller.is_staff:
        return True
    if caller.kind is CallerKind.ACCOUNT and caller.account_id is not None:
        owns: bool = await uow.accounts.owns_card(caller.account_id, card_id)
        return owns
    return False


async def visible_card(uow: UnitOfWork, services: Services, caller: Caller, number: str) -> Card:
    """The card with this number if the caller may see it; else ``card_unknown`` (404)."""
    card = await find_card(uow, services, number)
    if not await may_see_card(uow, caller, card.id):
        raise card_not_found()
    return card
