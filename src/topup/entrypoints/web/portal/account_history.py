"""The signed-in account's history: the renewals of its cards filtered by card, period and
status, a page at a time (at most ``history_limit_max`` a page), exported as CSV, and its
receipts (linking to each renewal's receipt page).

The CSV is safe to open in a spreadsheet: a cell that would start a formula (``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is written with a leading apostrophe."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from topup.domain.errors import InputError, TopupError
from topup.domain.renewal import RenewalStatus
from topup.entrypoints.spreadsheets import spreadsheet_safe
from topup.entrypoints.web.portal.account_common import (
    NO_STORE,
    AccountId,
    card_number_shown,
    locale_of,
    render,
    services_of,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors, form_errors
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.i18n import N_, format_money
from topup.services import account_history
from topup.services.account_history import HistoryFilter, HistoryLine

router = APIRouter()

HISTORY_PATH = "/accounts/history"
RECEIPTS_PATH = "/accounts/receipts"
PAGE_MAX = 10_000
STATUS_NAMES = {
    RenewalStatus.PENDING_PAYMENT: N_("Waiting for payment"),
    RenewalStatus.REQUIRES_ACTION: N_("Waiting for you to confirm the payment"),
    RenewalStatus.PAYMENT_PENDING: N_("Payment being checked"),
    RenewalStatus.ACTIVATING: N_("Paid, being activated"),
    RenewalStatus.COMPLETED: N_("Completed"),
    RenewalStatus.DECLINED: N_("Payment declined"),
    RenewalStatus.REFUNDED: N_("Refunded"),
    RenewalStatus.CANCELLED: N_("Cancelled"),
}


@dataclass(frozen=True)
class _Asked:
    wanted: HistoryFilter
    page: int
    errors: FormErrors
    values: dict[str, str]  # as typed, to show them back


def _day(text: str, name: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise InputError(
            "a date is written YYYY-MM-DD", code="invalid_input", field=name, params={}
        ) from None


def _asked(request: Request) -> _Asked:
    query = request.query_params
    values = {name: query.get(name, "")[:40] for name in ("card", "since", "until", "status")}
    try:
        page = int(query.get("page", "1")[:6] or "1")
    except ValueError:
        page = 1
    page = min(max(page, 1), PAGE_MAX)
    status = None
    if values["status"] in {each.value for each in RenewalStatus}:
        status = RenewalStatus(values["status"])
    try:
        since, until = _day(values["since"], "since"), _day(values["until"], "until")
    except TopupError as error:
        errors = form_errors(error, locale_of(request))
        return _Asked(
            HistoryFilter(values["card"] or None, None, None, status), page, errors, values
        )
    wanted = HistoryFilter(values["card"] or None, since, until, status)
    return _Asked(wanted, page, NO_ERRORS, values)


def _query(values: dict[str, str], page: int) -> str:
    from urllib.parse import urlencode

    kept = {name: value for name, value in values.items() if value}
    return urlencode({**kept, "page": str(page)})


@router.get(HISTORY_PATH)
async def history(request: Request, account_id: AccountId) -> Response:
    services = services_of(request)
    asked = _asked(request)
    cards = await account_history.my_cards(services, account_id)
    found = await account_history.history(services, account_id, asked.wanted, page=asked.page)
    context = {
        "cards": cards,
        "found": found,
        "errors": asked.errors,
        "values": asked.values,
        "statuses": STATUS_NAMES,
        "previous_query": _query(asked.values, asked.page - 1),
        "next_query": _query(asked.values, asked.page + 1),
        "export_query": _query(asked.values, 1),
    }
    return render(request, "history.html", context, 422 if asked.errors else 200)


def _rows(lines: list[HistoryLine], request: Request) -> list[list[str]]:
    page = renderer_of(request).page(request)
    locale = page.locale
    header = [
        page._("Date"),
        page._("Card"),
        page._("Plan"),
        page._("Amount"),
        page._("Currency"),
        page._("Status"),
        page._("Receipt number"),
        page._("Renewal reference"),
    ]
    rows = [header]
    for line in lines:
        renewal = line.renewal
        status = STATUS_NAMES.get(renewal.status)
        rows.append(
            [
                page.datetime(renewal.created_at, "short"),
                card_number_shown(line.card_number),
                line.plan_name(locale),
                format_money(renewal.amount, locale),
                renewal.amount.currency,
                page._(status) if status else renewal.status.value,
                (renewal.receipt_number or "") if renewal.paid_at else "",
                renewal.id,
            ]
        )
    return [[spreadsheet_safe(cell or "") for cell in row] for row in rows]


@router.get(HISTORY_PATH + ".csv")
async def history_csv(request: Request, account_id: AccountId) -> Response:
    """The filtered history as a CSV download (UTF-8 with a byte-order mark, for spreadsheets)."""
    asked = _asked(request)
    lines = await account_history.history_export(services_of(request), account_id, asked.wanted)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(_rows(lines, request))
    return Response(
        "\ufeff" + buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            **NO_STORE,
            "content-disposition": 'attachment; filename="topup-history.csv"',
            "x-content-type-options": "nosniff",
        },
    )


@router.get(RECEIPTS_PATH)
async def receipts(request: Request, account_id: AccountId) -> Response:
    services = services_of(request)
    asked = _asked(request)
    found = await account_history.history(
        services, account_id, HistoryFilter(), page=asked.page, paid_only=True
    )
    context = {
        "found": found,
        "statuses": STATUS_NAMES,
        "previous_query": _query({}, asked.page - 1),
        "next_query": _query({}, asked.page + 1),
    }
    return render(request, "receipts.html", context)
