"""A linked card's timeline (signed in): every event of the card itself, newest first, each a
sentence in the page's language with its detail formatted (money as the locale writes it, dates
and times in the profile's time zone): auto-renewal's pre-check problems, attempts, successes,
retries and final failure, auto top-ups and how they ended, grace and expiry, data low and
exhausted, credit low, bills. Linked from "my cards" and the auto-renewal page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from topup.domain.card_events import CardEventKind
from topup.domain.money import Money
from topup.domain.records import CardEvent
from topup.entrypoints.web.portal.account_common import (
    NO_STORE,
    AccountId,
    card_number_shown,
    services_of,
)
from topup.entrypoints.web.portal.moments import date_and_time
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.services.card_timeline import card_timeline

router = APIRouter()

PAGE_PATH = "/accounts/cards/{card_id}/timeline"
ID_LENGTH_MAX = 64
CREDIT_METHOD = "credit"
# The moment each kind's sentence names (besides when the event happened), from its detail.
MOMENT_OF = {
    CardEventKind.AUTO_RENEWAL_PROBLEM.value: "charge_at",
    CardEventKind.AUTO_RENEWAL_ATTEMPT.value: "charge_at",
    CardEventKind.AUTO_RENEWAL_RETRYING.value: "next_try_at",
    CardEventKind.AUTO_RENEWAL_FAILED.value: "grace_until",
    CardEventKind.BILL_ISSUED.value: "due_date",
}


@dataclass(frozen=True)
class TimelineLine:
    """One event as the page shows it: its kind, when, and the detail it names."""

    kind: str
    at: dt.datetime
    detail: dict[str, str | int]
    amount: Money | None  # the money it is about, in the card's currency
    moment: dt.datetime | None  # the date it names (next try, grace end, charge, due date)
    method: str  # what pays ("visa 4242"), or CREDIT_METHOD; "" if none

    def number(self, name: str) -> int | None:
        value = self.detail.get(name)
        return value if isinstance(value, int) else None

    def text(self, name: str) -> str:
        value = self.detail.get(name)
        return value if isinstance(value, str) else ""


def _moment(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _amount(event: CardEvent, currency: str) -> Money | None:
    detail = event.detail
    for name in ("amount_minor", "credit_minor"):
        minor = detail.get(name)
        if isinstance(minor, int):
            found = detail.get("currency")
            return Money(minor, found if isinstance(found, str) and found else currency)
    return None


def line_of(event: CardEvent, currency: str) -> TimelineLine:
    moment_key = MOMENT_OF.get(event.kind, "")
    moment_text = event.detail.get(moment_key, "")
    method = event.detail.get("method", "")
    return TimelineLine(
        kind=event.kind,
        at=event.at,
        detail=dict(event.detail),
        amount=_amount(event, currency),
        moment=_moment(moment_text) if isinstance(moment_text, str) and moment_text else None,
        method=method if isinstance(method, str) else "",
    )


@router.get(PAGE_PATH)
async def page(request: Request, account_id: AccountId, card_id: str) -> Response:
    timeline = await card_timeline(services_of(request), account_id, card_id[:ID_LENGTH_MAX])
    lines = [line_of(event, timeline.card.currency) for event in timeline.events]
    # Its own folder (and Babel domain, portal_card_timeline), apart from the account's pages.
    return renderer_of(request).render(
        request,
        "portal/card_timeline/timeline.html",
        {
            "card_number": card_number_shown,
            "date_and_time": date_and_time,
            "card": timeline.card,
            "lines": lines,
            "more": timeline.more,
            "credit_method": CREDIT_METHOD,
        },
        headers=NO_STORE,
    )
