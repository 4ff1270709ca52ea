"""What a signed-in account reads of its cards: each linked card with its balance read now (R5),
and the renewals of its cards, filtered by card, period and status, a page at a time, for the
screen and for a CSV export, and the receipts among them.

Only renewals of cards linked to the account are ever read (the query joins the links), so an
id in a filter that names another's card finds nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from topup.domain.errors import InputError
from topup.domain.records import RenewalRecord
from topup.domain.renewal import RenewalStatus
from topup.services.context import Services
from topup.services.queries import card_summary
from topup.services.views import CardView

PAGE_SIZE_DEFAULT = 20
EXPORT_ROWS_MAX = 1000  # rows in one CSV export
LINKED_CARDS_MAX = 100  # cards shown on one account's pages
RECENT_RENEWALS = 10  # looked at to find the plan whose data a card's bar measures against


@dataclass(frozen=True)
class MyCard:
    """A linked card read now, and the data of the last plan applied to it (what its data bar
    is measured against; None if no renewal of it was applied)."""

    card: CardView
    plan_data_mb: int | None

    @property
    def data_share_percent(self) -> int:
        """Data left as a share of the last plan's data (100 when more is left)."""
        full = max(self.plan_data_mb or 0, self.card.data_quota_mb)
        if full <= 0:
            return 0
        return min(100, round(100 * self.card.data_quota_mb / full))


@dataclass(frozen=True)
class HistoryFilter:
    card_id: str | None = None
    since: dt.date | None = None  # the operator's days, both included
    until: dt.date | None = None
    status: RenewalStatus | None = None


@dataclass(frozen=True)
class HistoryLine:
    renewal: RenewalRecord
    card_number: str  # E.164 of a card linked to the account
    plan_names: Mapping[str, str]  # by locale; empty if the plan was withdrawn

    def plan_name(self, locale: str) -> str:
        names = self.plan_names
        return names.get(locale) or names.get("en") or self.renewal.plan_code


@dataclass(frozen=True)
class HistoryPage:
    lines: list[HistoryLine]
    page: int  # from 1
    page_size: int
    has_next: bool


async def my_cards(services: Services, account_id: str) -> list[MyCard]:
    """The account's linked cards, in the order they were linked, read now (never cached)."""
    async with services.unit_of_work() as uow:
        cards = await uow.accounts.linked_cards(account_id, limit=LINKED_CARDS_MAX)
        found = []
        for card in cards:
            recent = await uow.renewals.for_card(card.id, limit=RECENT_RENEWALS)
            applied = [r.data_quota_mb for r in recent if r.status is RenewalStatus.COMPLETED]
            plan_data_mb = applied[0] if applied and applied[0] > 0 else None
            found.append(MyCard(card_summary(card, services), plan_data_mb))
    return found


def check_page(page: int, page_size: int, services: Services) -> None:
    maximum = services.limits.pages.history_limit_max
    if not 1 <= page_size <= maximum:
        raise InputError(
            f"limit must be between 1 and {maximum}",
            code="limit_out_of_range",
            field="limit",
            params={"maximum": str(maximum)},
        )
    if page < 1:
        raise InputError("page must be 1 or more", code="invalid_input", field="page", params={})


def _bounds(
    services: Services, wanted: HistoryFilter
) -> tuple[dt.datetime | None, dt.datetime | None]:
    zone = ZoneInfo(services.profile.time_zone)

    def start_of(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)

    since = None if wanted.since is None else start_of(wanted.since)
    until = None if wanted.until is None else start_of(wanted.until + dt.timedelta(days=1))
    return since, until


async def _lines(
    services: Services,
    account_id: str,
    wanted: HistoryFilter,
    *,
    paid_only: bool,
    limit: int,
    offset: int,
) -> list[HistoryLine]:
    since, until = _bounds(services, wanted)
    async with services.unit_of_work() as uow:
        renewals = await uow.account_history.renewals_of_account(
            account_id,
            card_id=wanted.card_id,
            since=since,
            until=until,
            statuses=() if wanted.status is None else (wanted.status,),
            paid_only=paid_only,
            limit=limit,
            offset=offset,
        )
        cards = await uow.cards.get_many(sorted({r.card_id for r in renewals}))
        plans = await uow.plans.get_many(sorted({r.plan_code for r in renewals}))
    return [
        HistoryLine(
            renewal=renewal,
            card_number=cards[renewal.card_id].msisdn if renewal.card_id in cards else "",
            plan_names=plans[renewal.plan_code].names if renewal.plan_code in plans else {},
        )
        for renewal in renewals
    ]


async def history(
    services: Services,
    account_id: str,
    wanted: HistoryFilter,
    *,
    page: int = 1,
    page_size: int = PAGE_SIZE_DEFAULT,
    paid_only: bool = False,
) -> HistoryPage:
    """A page of the renewals of the account's cards, newest first (``paid_only``: those with a
    receipt)."""
    check_page(page, page_size, services)
    lines = await _lines(
        services,
        account_id,
        wanted,
        paid_only=paid_only,
        limit=page_size + 1,
        offset=(page - 1) * page_size,
    )
    return HistoryPage(lines[:page_size], page, page_size, len(lines) > page_size)


async def history_export(
    services: Services, account_id: str, wanted: HistoryFilter
) -> list[HistoryLine]:
    """Every renewal the filter finds, newest first, at most EXPORT_ROWS_MAX."""
    return await _lines(
        services, account_id, wanted, paid_only=False, limit=EXPORT_ROWS_MAX, offset=0
    )
