"""An organisation's fleet for its signed-in members: its organisations, the fleet (cards by
status with counts, near expiry, data left, spend this month, each card's auto-renewal;
filters by status, near expiry and number; a page at a time; CSV export) and its monthly
invoices (PDF). Adding a card by SMS code and taking one out are in ``fleet_cards``, the bulk
renewal pages in ``fleet_bulk``, the auto-renewal policy in ``fleet_policy``; all are mounted
behind ``require_account``."""

from __future__ import annotations

import csv
import datetime as dt
import io
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import NotFoundError
from topup.domain.fleets import FleetFilter, Invoice
from topup.entrypoints.spreadsheets import spreadsheet_safe
from topup.entrypoints.web.portal import fleet_cards
from topup.entrypoints.web.portal.account_common import (
    NO_STORE,
    AccountId,
    card_number_shown,
    services_of,
)
from topup.entrypoints.web.portal.fleet_common import (
    ID_LENGTH_MAX,
    ORGANISATIONS_PATH,
    fleet_path,
    render,
)
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.i18n import N_
from topup.services.fleets import invoices, organisations, policy
from topup.services.fleets.organisations import CARD_STATUSES
from topup.services.views import CardView

router = APIRouter()
router.include_router(fleet_cards.router)  # adding a card by SMS code, taking one out

SEARCH_LENGTH_MAX = 40
NOTICES = frozenset({"card_removed", "card_removed_auto_renewal_stopped"})
INVOICE_MONTHS_SHOWN = 12  # the months offered on the invoices page, this one first
STATUS_NAMES = {
    "active": N_("Active"),
    "grace": N_("In grace period"),
    "expired": N_("Expired"),
    "suspended": N_("Suspended"),
}
PREPAID, POSTPAID = N_("Prepaid"), N_("Postpaid")
EXPORT_COLUMNS = (
    N_("Number"),
    "ICCID",
    N_("Kind"),
    N_("Status"),
    N_("Data left (MB)"),
    N_("Valid until"),
    N_("Credit"),
)


@router.get(ORGANISATIONS_PATH)
async def my_organisations(request: Request, account_id: AccountId) -> Response:
    """The account's organisations; with just one, its fleet."""
    found = await organisations.my_organisations(services_of(request), account_id)
    if len(found) == 1:
        return RedirectResponse(fleet_path(found[0][0].id, "/fleet"), status_code=303)
    return render(request, "organisations.html", {"memberships": found})


def _asked(request: Request) -> dict[str, str]:
    query = request.query_params
    status = query.get("status", "")
    return {
        "status": status if status in CARD_STATUSES else "",
        "near": "1" if query.get("near") == "1" else "",
        "q": "".join(ch for ch in query.get("q", "")[:SEARCH_LENGTH_MAX] if ch.isdigit()),
    }


def _offset(request: Request) -> int:
    text = request.query_params.get("offset", "0")[:9]
    return int(text) if text.isascii() and text.isdigit() else 0


def _filter(request: Request, asked: dict[str, str]) -> FleetFilter:
    return organisations.fleet_filter(
        services_of(request),
        status=asked["status"],
        near_expiry=bool(asked["near"]),
        search=asked["q"],
    )


def _query(asked: dict[str, str], offset: int | None = None) -> str:
    values = {key: value for key, value in asked.items() if value}
    if offset:
        values["offset"] = str(offset)
    return urlencode(values)


async def _added_card(request: Request, account_id: str, organisation_id: str) -> CardView | None:
    """The card just added (``?added=<card id>``), if it is in the fleet (a forged id: none)."""
    card_id = request.query_params.get("added", "")[:ID_LENGTH_MAX]
    if not card_id:
        return None
    try:
        return await organisations.fleet_card(
            services_of(request), account_id, organisation_id, card_id
        )
    except NotFoundError:
        return None


@router.get(ORGANISATIONS_PATH + "/{organisation_id}/fleet")
async def fleet(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    services = services_of(request)
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    added = await _added_card(request, account_id, organisation_id)
    notice = request.query_params.get("notice", "")
    asked = _asked(request)
    found = await organisations.fleet_page(
        services, account_id, organisation_id, _filter(request, asked), offset=_offset(request)
    )
    autos = await policy.auto_renewals_of(
        services, account_id, organisation_id, [card.id for card in found.cards]
    )
    context = {
        "found": found,
        "organisation": found.organisation,
        "role": found.role.value,
        "autos": autos,
        "asked": asked,
        "statuses": STATUS_NAMES,
        "previous_query": _query(asked, max(0, found.offset - found.page_size)),
        "next_query": _query(asked, found.offset + found.page_size),
        "export_query": _query(asked),
        "current": "fleet",
        "may_manage": found.role.may_manage,
        "added": added,
        "notice": notice if notice in NOTICES else None,
        "policy_exists": bool(added)
        and await policy.latest_policy_request(services, account_id, organisation_id) is not None,
    }
    return render(request, "fleet.html", context)


@router.get(ORGANISATIONS_PATH + "/{organisation_id}/fleet.csv")
async def fleet_csv(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    """The filtered fleet as a CSV download (UTF-8 with a byte-order mark, for spreadsheets)."""
    services = services_of(request)
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    cards = await organisations.fleet_export(
        services, account_id, organisation_id, _filter(request, _asked(request))
    )
    page = renderer_of(request).page(request)
    rows = [[page._(column) for column in EXPORT_COLUMNS]]
    for card in cards:
        rows.append(
            [
                card_number_shown(card.msisdn),
                card.iccid,
                page._(PREPAID if card.kind.value == "prepaid" else POSTPAID),
                page._(STATUS_NAMES.get(card.status.value, card.status.value)),
                str(card.data_quota_mb),
                page.datetime(card.validity_end, "short") if card.validity_end else "",
                page.money(card.credit),
            ]
        )
    buffer = io.StringIO()
    csv.writer(buffer).writerows([[spreadsheet_safe(cell) for cell in row] for row in rows])
    return Response(
        "\ufeff" + buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            **NO_STORE,
            "content-disposition": 'attachment; filename="topup-fleet.csv"',
            "x-content-type-options": "nosniff",
        },
    )


# --- invoices --------------------------------------------------------------------------------


def _recent_months(now: dt.datetime, time_zone: str) -> list[str]:
    local = now.astimezone(ZoneInfo(time_zone))
    year, month = local.year, local.month
    months = []
    for _ in range(INVOICE_MONTHS_SHOWN):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


@router.get(ORGANISATIONS_PATH + "/{organisation_id}/invoices")
async def invoices_page(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    services = services_of(request)
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    issued = await invoices.invoices_of(services, account_id, organisation_id)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    latest: dict[str, Invoice] = {}
    for invoice in issued:  # newest first: the first of a month is the one that stands
        latest.setdefault(invoice.month, invoice)
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "months": _recent_months(services.clock.now(), services.profile.time_zone),
        "latest": latest,
        "current": "invoices",
    }
    return render(request, "invoices.html", context)


@router.post(ORGANISATIONS_PATH + "/{organisation_id}/invoices/{month}")
async def invoice_pdf(
    request: Request, account_id: AccountId, organisation_id: str, month: str
) -> Response:
    """The month's invoice as a PDF (issued now if none stands for the month's renewals as they
    are: a POST, since it may take the next invoice number)."""
    services = services_of(request)
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    document = await invoices.issue_invoice(services, account_id, organisation_id, month)
    return Response(
        document.pdf,
        media_type="application/pdf",
        headers={
            **NO_STORE,
            "content-disposition": f'attachment; filename="{document.invoice.number}.pdf"',
        },
    )
