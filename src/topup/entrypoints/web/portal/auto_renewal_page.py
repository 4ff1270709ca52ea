"""A linked card's auto-renewal page (signed in): turn it on with a plan and a saved payment card
or the card's credit, optionally "top up when data falls below X MB" with a monthly limit; see the
next charge (date, amount, method) and what the last pre-check found; turn it off. It is also the
one-tap fix that auto-renewal's problem events and reminders link to (``fix_path``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.auto_renewal import TopUpRule
from topup.domain.errors import InputError, TopupError
from topup.entrypoints.web.portal.account_common import (
    NO_STORE,
    AccountId,
    card_number_shown,
    locale_of,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.portal.moments import date_and_time
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sales_channel import sales_channel
from topup.i18n import format_number
from topup.services import account_history, auto_renewal, queries, saved_payment_cards
from topup.services.auto_renewal.settings import TOP_UP_THRESHOLD_MB_MAX
from topup.services.renewals.reads import card_unknown
from topup.services.views import CardView

router = APIRouter()

PAGE_PATH = "/accounts/cards/{card_id}/auto-renewal"
ID_LENGTH_MAX = 64
PLAN_CODE_LENGTH_MAX = 64
NUMBER_LENGTH_MAX = 9
CREDIT = "credit"  # the "pay with" choice of the card's own credit
NOTICES = frozenset({"on", "off"})
NUMBER_PARAMS = ("maximum",)  # error parameters that are whole numbers
FIELDS = {
    "plan": "plan_code",
    "plan_code": "plan_code",
    "payment": "payment",
    "saved_payment_card": "payment",
    "top_up_below_mb": "top_up_below_mb",
    "top_up_cap": "top_up_month_count_max",
}


def _path(card_id: str) -> str:
    return PAGE_PATH.format(card_id=card_id)


async def _linked_card(request: Request, account_id: str, card_id: str) -> CardView:
    cards = await account_history.my_cards(services_of(request), account_id)
    found = next((mine.card for mine in cards if mine.card.id == card_id), None)
    if found is None:
        raise card_unknown()
    return found


async def _page(
    request: Request,
    account_id: str,
    card_id: str,
    *,
    error: TopupError | None = None,
    chosen: dict[str, str] | None = None,
    notice: str = "",
) -> Response:
    services = services_of(request)
    card = await _linked_card(request, account_id, card_id)
    _, plans = await queries.list_plans(
        services, card_number=card.msisdn, channel=sales_channel(request)
    )
    saved = [each for each in await saved_payment_cards.saved_payment_cards(services, account_id)]
    view = await auto_renewal.auto_renewal_of(services, card.id)
    managed_by = await auto_renewal.managed_by(services, account_id, card.id)
    if error is not None:
        _numbers_for_people(error, locale_of(request))
    errors = NO_ERRORS if error is None else form_errors(error, locale_of(request), fields=FIELDS)
    values = dict(chosen or {})
    if view is not None and not values:
        values = {
            "plan_code": view.plan_code,
            "payment": view.saved_payment_card_id or CREDIT,
            "top_up": "yes" if view.top_up else "",
            "top_up_below_mb": str(view.top_up.below_mb) if view.top_up else "",
            "top_up_month_count_max": str(view.top_up.month_count_max or "") if view.top_up else "",
        }
    context = {
        "card": card,
        "plans": plans,
        "saved": saved,
        "auto": view,
        "managed_by": managed_by,  # the organisation's name: its card, shown read-only
        # ... but for turning off an auto-renewal the account itself pays for
        "may_turn_off": managed_by is not None
        and view is not None
        and view.enabled
        and await auto_renewal.turn_off_allowed(services, account_id, card.id),
        "values": values,
        "errors": errors,
        "notice": notice if notice in NOTICES else None,
        "credit_choice": CREDIT,
    }
    # Its own folder (and Babel domain, portal_auto_renewal), apart from the account's pages.
    return renderer_of(request).render(
        request,
        "portal/auto_renewal/auto_renewal.html",
        {"card_number": card_number_shown, "date_and_time": date_and_time, **context},
        status_code=200 if error is None else status_for(error),
        headers=NO_STORE,
    )


@router.get(PAGE_PATH)
async def page(request: Request, account_id: AccountId, card_id: str, notice: str = "") -> Response:
    return await _page(request, account_id, card_id[:ID_LENGTH_MAX], notice=notice)


def _numbers_for_people(error: TopupError, locale: str) -> None:
    """An error's whole-number parameters (``maximum``: 10000000) as the locale writes numbers
    (10,000,000 in English, 10.000.000 in Indonesian), before its message is made."""
    for name in NUMBER_PARAMS:
        value = error.params.get(name, "")
        if value.isascii() and value.isdigit():
            error.params[name] = format_number(int(value), locale)


def _whole_number(text: str, *, code: str, field: str, maximum: int) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise InputError(
            "Enter a whole number.",
            code=code,
            field=field,
            params={"maximum": str(maximum)},
        )
    return int(text)


@router.post(PAGE_PATH)
async def turn_on(request: Request, account_id: AccountId, card_id: str) -> Response:
    card_id = card_id[:ID_LENGTH_MAX]
    form = await request.form()
    chosen = {
        "plan_code": text_field(form, "plan_code", PLAN_CODE_LENGTH_MAX),
        "payment": text_field(form, "payment", ID_LENGTH_MAX),
        "top_up": text_field(form, "top_up", 3),
        "top_up_below_mb": text_field(form, "top_up_below_mb", NUMBER_LENGTH_MAX),
        "top_up_month_count_max": text_field(form, "top_up_month_count_max", NUMBER_LENGTH_MAX),
    }
    services = services_of(request)
    try:
        rule = None
        if chosen["top_up"]:
            below = _whole_number(
                chosen["top_up_below_mb"],
                code="auto_top_up_threshold_invalid",
                field="top_up_below_mb",
                maximum=TOP_UP_THRESHOLD_MB_MAX,
            )
            count = _whole_number(
                chosen["top_up_month_count_max"],
                code="auto_top_up_cap_invalid",
                field="top_up_cap",
                maximum=services.limits.auto_renewal.auto_top_ups_per_month_max,
            )
            if below is None:
                raise InputError(
                    "Enter the data level.",
                    code="auto_top_up_threshold_invalid",
                    field="top_up_below_mb",
                    params={"maximum": str(TOP_UP_THRESHOLD_MB_MAX)},
                )
            # Left empty, the cap is the most a month allows; 0 is refused by the service.
            cap_max = services.limits.auto_renewal.auto_top_ups_per_month_max
            rule = TopUpRule(chosen["plan_code"], below, cap_max if count is None else count, None)
        payment = chosen["payment"]
        await auto_renewal.set_for_account(
            services,
            account_id,
            card_id=card_id,
            plan_code=chosen["plan_code"],
            saved_payment_card_id=None if payment == CREDIT else payment,
            top_up=rule,
            channel=sales_channel(request),
        )
    except TopupError as error:
        return await _page(request, account_id, card_id, error=error, chosen=chosen)
    return RedirectResponse(_path(card_id) + "?notice=on", status_code=303)


@router.post(PAGE_PATH + "/off")
async def turn_off(request: Request, account_id: AccountId, card_id: str) -> Response:
    card_id = card_id[:ID_LENGTH_MAX]
    try:
        await auto_renewal.turn_off_for_account(services_of(request), account_id, card_id=card_id)
    except TopupError as error:
        return await _page(request, account_id, card_id, error=error)
    return RedirectResponse(_path(card_id) + "?notice=off", status_code=303)
