"""Read-side use cases: cards, plans for a card, balances, history."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from topup.domain.callers import Caller
from topup.domain.cards import Card, CardKind, status_at
from topup.domain.errors import InputError, InvariantError
from topup.domain.plans import Plan
from topup.domain.records import RenewalRecord
from topup.services.access import visible_card
from topup.services.context import Services
from topup.services.renewals import find_card
from topup.services.views import iso


def card_summary(card: Card, services: Services) -> dict[str, Any]:
    now = services.clock.now()
    status = status_at(card, now, services.profile.grace_period_days)
    grace_end = (
        card.validity_end + dt.timedelta(days=services.profile.grace_period_days)
        if card.kind is CardKind.PREPAID and card.validity_end is not None
        else None
    )
    return {
        "id": card.id,
        "msisdn": card.msisdn,
        "iccid": card.iccid,
        "kind": card.kind.value,
        "status": status.value,
        "currency": card.currency,
        "credit": card.credit.decimal_text(),
        "credit_minor": card.credit.minor,
        "data_quota_mb": card.data_quota_mb,
        "validity_end": iso(card.validity_end),
        "grace_end": iso(grace_end),
        "bill_due": card.bill_due.decimal_text(),
        "bill_due_minor": card.bill_due.minor,
        "bill_due_date": iso(card.bill_due_date),
    }


def plan_summary(plan: Plan, locale: str) -> dict[str, Any]:
    return {
        "code": plan.code,
        "name": plan.name(locale),
        "kind": plan.kind.value,
        "price": plan.price.decimal_text(),
        "price_minor": plan.price.minor,
        "currency": plan.price.currency,
        "data_quota_mb": plan.data_quota_mb,
        "validity_days": plan.validity_days,
        "card_kinds": sorted(kind.value for kind in plan.card_kinds),
        "channels": sorted(plan.channels),
    }


def _check_limit(limit: int, maximum: int) -> int:
    if not 1 <= limit <= maximum:
        raise InputError(
            f"limit must be between 1 and {maximum}",
            code="limit_out_of_range",
            field="limit",
            params={"maximum": str(maximum)},
        )
    return limit


async def list_cards(services: Services, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    _check_limit(limit, services.limits.list_limit_max)
    async with services.unit_of_work() as uow:
        cards: list[Card] = await uow.cards.list_page(limit=limit, offset=max(offset, 0))
    return [card_summary(card, services) for card in cards]


async def list_plans(
    services: Services, *, card_number: str | None, channel: str | None, locale: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """All plans, or those a given card may buy (on a channel when one is named)."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number) if card_number else None
        plans: list[Plan] = await uow.plans.list_all(limit=services.limits.list_limit_max)
    out = []
    for plan in plans:
        if not plan.is_on_sale(now):
            continue
        if card is not None and card.kind not in plan.card_kinds:
            continue
        if channel is not None and channel not in plan.channels:
            continue
        summary = plan_summary(plan, locale)
        if card is not None and plan.kind.value == "postpaid_bill":
            summary["price"] = card.bill_due.decimal_text()
            summary["price_minor"] = card.bill_due.minor
        out.append(summary)
    return (None if card is None else card_summary(card, services)), out


async def balance(services: Services, card_number: str) -> dict[str, Any]:
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number)
    return card_summary(card, services)


async def history(services: Services, card_number: str, *, limit: int) -> dict[str, Any]:
    """Renewals, newest first, and what happened to the card itself (grace, expiry, forfeits)."""
    _check_limit(limit, services.limits.history_limit_max)
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number)
        renewals = await uow.renewals.for_card(card.id, limit=limit)
        events = await uow.cards.events(card.id, limit=limit)
        entries = await uow.ledger.entries_for_card(card.id, limit=limit)
    return {
        "card": card_summary(card, services),
        "renewals": [
            {
                "id": r.id,
                "status": r.status.value,
                "plan": r.plan_code,
                "channel": r.channel,
                "amount": r.amount.decimal_text(),
                "currency": r.amount.currency,
                "created_at": iso(r.created_at),
                "completed_at": iso(r.completed_at),
            }
            for r in renewals
        ],
        "card_events": [
            {"kind": e["kind"], "at": iso(e["at"]), "detail": e["detail"]} for e in events
        ],
        "ledger_entries": [
            {"id": entry_id, "kind": entry.kind.value, "memo": entry.memo, "at": iso(at)}
            for entry_id, entry, at in entries
        ],
    }


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


async def card_balance(services: Services, caller: Caller, card_number: str) -> dict[str, Any]:
    """A card's balance, read now (R5), for its owner or staff."""
    async with services.unit_of_work() as uow:
        card = await visible_card(uow, services, caller, card_number)
    return card_summary(card, services)


async def card_transactions(
    services: Services, caller: Caller, card_number: str, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """A card's renewals, newest first, a page at a time; ``next_cursor`` continues."""
    _check_limit(limit, services.limits.history_limit_max)
    before = None if cursor is None else _parse_cursor(cursor)
    async with services.unit_of_work() as uow:
        card = await visible_card(uow, services, caller, card_number)
        renewals: list[RenewalRecord] = await uow.renewals.for_card(
            card.id, limit=limit + 1, before=before
        )
    page, more = renewals[:limit], len(renewals) > limit
    return {
        "card_number": card.msisdn,
        "transactions": [
            {
                "renewal_id": r.id,
                "status": r.status.value,
                "kind": r.kind.value,
                "plan": r.plan_code,
                "channel": r.channel,
                "amount": r.amount.decimal_text(),
                "amount_minor": r.amount.minor,
                "currency": r.amount.currency,
                "created_at": iso(r.created_at),
                "paid_at": iso(r.paid_at),
                "completed_at": iso(r.completed_at),
                "receipt_number": r.receipt_number if r.paid_at is not None else None,
            }
            for r in page
        ],
        "next_cursor": _cursor_of(page[-1]) if more else None,
    }


async def public_plans(
    services: Services, *, card_number: str, channel: str, locale: str
) -> dict[str, Any]:
    """What anyone may learn of a card by its number: its kind, status and validity end, and the
    plans it may buy on this channel. Nothing personal (no holder, credit or data left)."""
    card, plans = await list_plans(
        services, card_number=card_number, channel=channel, locale=locale
    )
    if card is None:
        raise InvariantError("a card number was given but no card came back")
    return {
        "card": {
            "kind": card["kind"],
            "status": card["status"],
            "validity_end": card["validity_end"],
            "grace_end": card["grace_end"],
            "currency": card["currency"],
        },
        "channel": channel,
        "plans": plans,
    }
