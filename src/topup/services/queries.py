"""Read-side use cases: cards, plans for a card, balances, history."""

from __future__ import annotations

import base64
import datetime as dt
import json

from topup.domain.callers import Caller
from topup.domain.cards import Card
from topup.domain.errors import InputError, InvariantError
from topup.domain.plans import Plan, PlanKind
from topup.domain.records import RenewalRecord
from topup.services.access import visible_card
from topup.services.context import Services
from topup.services.renewals import find_card
from topup.services.renewals.reads import card_unknown
from topup.services.views import (
    CardHistory,
    CardPlans,
    CardView,
    LedgerLine,
    PlanOffer,
    TransactionsPage,
    card_view,
)


def card_summary(card: Card, services: Services) -> CardView:
    """The card as of now (its status at this moment, when its grace ends)."""
    return card_view(
        card, now=services.clock.now(), grace_period_days=services.profile.grace_period_days
    )


def _check_limit(limit: int, maximum: int) -> int:
    if not 1 <= limit <= maximum:
        raise InputError(
            f"limit must be between 1 and {maximum}",
            code="limit_out_of_range",
            field="limit",
            params={"maximum": str(maximum)},
        )
    return limit


async def list_cards(services: Services, *, limit: int, offset: int = 0) -> list[CardView]:
    _check_limit(limit, services.limits.pages.list_limit_max)
    async with services.unit_of_work() as uow:
        cards: list[Card] = await uow.cards.list_page(limit=limit, offset=max(offset, 0))
    return [card_summary(card, services) for card in cards]


async def list_plans(
    services: Services, *, card_number: str | None, channel: str | None
) -> tuple[CardView | None, list[PlanOffer]]:
    """All plans, or those a given card may buy (on a channel when one is named)."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number) if card_number else None
        plans: list[Plan] = await uow.plans.list_all(limit=services.limits.pages.list_limit_max)
    offers = _offers(plans, card, channel, now)
    return (None if card is None else card_summary(card, services)), offers


def _offers(
    plans: list[Plan], card: Card | None, channel: str | None, now: dt.datetime
) -> list[PlanOffer]:
    offers = []
    for plan in plans:
        if not plan.is_on_sale(now):
            continue
        if card is not None and card.kind not in plan.card_kinds:
            continue
        if channel is not None and channel not in plan.channels:
            continue
        price = plan.price
        if card is not None and plan.kind is PlanKind.POSTPAID_BILL:
            price = card.bill_due
        offers.append(PlanOffer(plan, price))
    return offers


async def balance(services: Services, card_number: str) -> CardView:
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number)
    return card_summary(card, services)


async def history(services: Services, card_number: str, *, limit: int) -> CardHistory:
    """Renewals, newest first, and what happened to the card itself (grace, expiry, forfeits)."""
    _check_limit(limit, services.limits.pages.history_limit_max)
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number)
        renewals = await uow.renewals.for_card(card.id, limit=limit)
        events = await uow.cards.events(card.id, limit=limit)
        entries = await uow.ledger.entries_for_card(card.id, limit=limit)
    return CardHistory(
        card=card_summary(card, services),
        renewals=renewals,
        card_events=events,
        ledger_entries=[
            LedgerLine(entry_id, entry.kind, entry.memo, at) for entry_id, entry, at in entries
        ],
    )


# --- what a caller may see (object-level authorisation in services.access) -------------------

CURSOR_LENGTH_MAX = 200
CURSOR_YEARS = (2000, 9000)  # a cursor's time lies in here, or it was not made by us


def _cursor_of(renewal: RenewalRecord) -> str:
    text = json.dumps([renewal.created_at.isoformat(), renewal.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[dt.datetime, str]:
    invalid = InputError(
        "this cursor is not one this list gave; start again without it",
        code="cursor_invalid",
        field="cursor",
    )
    if len(cursor) > CURSOR_LENGTH_MAX:
        raise invalid
    try:
        at, renewal_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = dt.datetime.fromisoformat(at).astimezone(dt.UTC)
    except (ValueError, TypeError, OverflowError):
        raise invalid from None
    if (
        not isinstance(renewal_id, str)
        or len(renewal_id) > CURSOR_LENGTH_MAX
        or not renewal_id.isprintable()  # a NUL would reach the database
        or not CURSOR_YEARS[0] <= moment.year <= CURSOR_YEARS[1]
    ):
        raise invalid
    return moment, renewal_id


async def card_balance(services: Services, caller: Caller, card_number: str) -> CardView:
    """A card's balance, read now (R5), for its owner or staff."""
    async with services.unit_of_work() as uow:
        card = await visible_card(uow, services, caller, card_number)
    return card_summary(card, services)


async def card_transactions(
    services: Services, caller: Caller, card_number: str, *, limit: int, cursor: str | None
) -> TransactionsPage:
    """A card's renewals, newest first, a page at a time; ``next_cursor`` continues."""
    _check_limit(limit, services.limits.pages.history_limit_max)
    before = None if cursor is None else _parse_cursor(cursor)
    async with services.unit_of_work() as uow:
        card = await visible_card(uow, services, caller, card_number)
        renewals: list[RenewalRecord] = await uow.renewals.for_card(
            card.id, limit=limit + 1, before=before
        )
    page, more = renewals[:limit], len(renewals) > limit
    return TransactionsPage(card.msisdn, page, _cursor_of(page[-1]) if more else None)


async def public_plans(services: Services, *, card_number: str, channel: str) -> CardPlans:
    """What anyone may learn of a card by its number, and the plans it may buy on this
    channel. The view holds the whole card: entrypoints show only its kind, status, validity
    and grace ends and currency (nothing personal: no holder, credit or data left)."""
    card, plans = await list_plans(services, card_number=card_number, channel=channel)
    if card is None:
        raise InvariantError("a card number was given but no card came back")
    return CardPlans(card, channel, plans)


async def public_plans_by_id(services: Services, *, card_id: str, channel: str) -> CardPlans:
    """``public_plans`` for a card named by its id: the reference a page carries after the
    card was looked up by its number (rate limited there), so that no number is in a URL."""
    async with services.unit_of_work() as uow:
        card: Card | None = await uow.cards.get(card_id)
        plans: list[Plan] = await uow.plans.list_all(limit=services.limits.pages.list_limit_max)
    if card is None:
        raise card_unknown()
    now = services.clock.now()
    return CardPlans(card_summary(card, services), channel, _offers(plans, card, channel, now))
