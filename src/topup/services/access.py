"""Who may see what (object-level authorisation). A card, renewal or receipt that the caller may
not see is answered exactly as one that does not exist, so that nobody learns which exist."""

from __future__ import annotations

import hmac

from topup.domain.callers import Caller, CallerKind
from topup.domain.cards import Card
from topup.domain.errors import NotFoundError
from topup.ports import UnitOfWork
from topup.services.context import Services
from topup.services.renewals import find_card, get_renewal, renewal_unknown
from topup.services.views import RenewalView


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
    """The card with this number if the caller may see it; else ``card_unknown`` (404). The
    ownership look-up runs for a card that does not exist too, so that both take as long."""
    try:
        card: Card | None = await find_card(uow, services, number)
    except NotFoundError:
        card = None
    allowed = await may_see_card(uow, caller, "" if card is None else card.id)
    if card is None or not allowed:
        raise card_not_found()
    return card


SECRET_SEPARATOR = "_secret_"  # noqa: S105 - a separator, not a secret
SECRET_LENGTH = 32


def client_secret_of(services: Services, renewal_id: str) -> str:
    """What lets the client that made a renewal read and confirm it: derived from the renewal's
    id with the server's key, so there is nothing to store and nothing to leak."""
    keyed = services.tokens.fingerprint(f"client-secret:{renewal_id}")[:SECRET_LENGTH]
    return renewal_id + SECRET_SEPARATOR + keyed


def holds_client_secret(services: Services, renewal_id: str, presented: str | None) -> bool:
    if not presented:
        return False
    expected = client_secret_of(services, renewal_id)
    return hmac.compare_digest(presented.encode(), expected.encode())


async def visible_renewal(
    services: Services, caller: Caller, renewal_id: str, client_secret: str | None
) -> RenewalView:
    """The renewal if the caller holds its client secret, owns its card or is staff; else
    ``renewal_unknown`` (404), with the same look-ups as for a renewal that does not exist."""
    if holds_client_secret(services, renewal_id, client_secret):
        return await get_renewal(services, renewal_id)
    try:
        view: RenewalView | None = await get_renewal(services, renewal_id)
    except NotFoundError:
        view = None
    async with services.unit_of_work() as uow:
        allowed = await may_see_card(uow, caller, "" if view is None else view.renewal.card_id)
    if view is None or not allowed:
        raise renewal_unknown(renewal_id)
    return view
