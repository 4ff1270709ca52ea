"""The signed-in account's cards: "my cards" (each read now: data left as a bar, validity as a
countdown, credit, status and what grace means), linking a card by a code sent by SMS to its
number, and renewing a linked card in one tap with a saved payment card.

The card number travels only in POST bodies; a linked card is named in URLs by its opaque id.
A one-tap renewal's idempotency key is issued by the server with the form, as the checkout's is:
pressing Pay twice, refreshing or going Back gives the same renewal, whose status page follows."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import TopupError
from topup.entrypoints.http.rate_limits import (
    check_card_lookup,
    check_sms_code_request,
)
from topup.entrypoints.web.portal.account_common import (
    AccountId,
    SignedIn,
    locale_of,
    render,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.entrypoints.web.shared.sales_channel import sales_channel
from topup.services import account_history, accounts, queries, saved_payment_cards
from topup.services.fleets import organisations
from topup.services.renewals import IDEMPOTENCY_KEY_LENGTH_MAX
from topup.services.renewals.reads import card_unknown
from topup.services.views import CardView

router = APIRouter()

CARDS_PATH = "/accounts/cards"
CARD_NUMBER_LENGTH_MAX = 40
LINK_CODE_LENGTH_MAX = 16
PLAN_CODE_LENGTH_MAX = 64
ID_LENGTH_MAX = 64
LINK_FIELDS = {"card_number": "card_number", "code": "code"}
NOTICES = frozenset({"linked"})


@router.get("/accounts")
async def account_home(account_id: AccountId) -> Response:
    return RedirectResponse(CARDS_PATH, status_code=303)


@router.get(CARDS_PATH)
async def my_cards(request: Request, account_id: AccountId, notice: str = "") -> Response:
    """Read now, every time: the page is never cached."""
    cards = await account_history.my_cards(services_of(request), account_id)
    shown = notice if notice in NOTICES else None
    # Issue 11: a member of an organisation finds its fleet from here.
    memberships = await organisations.my_organisations(services_of(request), account_id)
    context = {"cards": cards, "notice": shown, "organisations": memberships}
    return render(request, "cards.html", context)


@router.get(CARDS_PATH + "/link")
async def link_page(request: Request, account_id: AccountId) -> Response:
    return render(request, "link.html", {"errors": NO_ERRORS, "card_number": ""})


@router.post(CARDS_PATH + "/link")
async def start_link(request: Request, account_id: AccountId, caller: SignedIn) -> Response:
    """The API's limits: codes per client address and account, and card look-ups."""
    form = await request.form()
    card_number = text_field(form, "card_number", CARD_NUMBER_LENGTH_MAX)
    services = services_of(request)
    try:
        await check_sms_code_request(request, caller, card_number)
        sent = await accounts.start_card_link(services, account_id, card_number)
    except TopupError as error:
        errors = form_errors(error, locale_of(request), fields=LINK_FIELDS)
        context = {"errors": errors, "card_number": card_number}
        return render(request, "link.html", context, status_for(error))
    context = {"errors": NO_ERRORS, "card_number": card_number, "sent": sent}
    return render(request, "link_code.html", context, 202)


@router.post(CARDS_PATH + "/link/verify")
async def verify_link(request: Request, account_id: AccountId, caller: SignedIn) -> Response:
    form = await request.form()
    card_number = text_field(form, "card_number", CARD_NUMBER_LENGTH_MAX)
    code = text_field(form, "code", LINK_CODE_LENGTH_MAX)
    services = services_of(request)
    try:
        await check_card_lookup(request, caller, card_number)
        await accounts.verify_card_link(services, account_id, card_number, code)
    except TopupError as error:
        errors = form_errors(error, locale_of(request), fields=LINK_FIELDS)
        context = {"errors": errors, "card_number": card_number, "sent": None}
        return render(request, "link_code.html", context, status_for(error))
    return RedirectResponse(CARDS_PATH + "?notice=linked", status_code=303)


# --- one-tap renewal -------------------------------------------------------------------------


async def _linked_card(request: Request, account_id: str, card_id: str) -> CardView | None:
    cards = await account_history.my_cards(services_of(request), account_id)
    return next((found.card for found in cards if found.card.id == card_id), None)


async def _renew_page(
    request: Request,
    account_id: str,
    card: CardView,
    *,
    error: TopupError | None = None,
    chosen_plan: str = "",
    key: str = "",
) -> Response:
    services = services_of(request)
    _, plans = await queries.list_plans(
        services, card_number=card.msisdn, channel=sales_channel(request)
    )
    saved = await saved_payment_cards.saved_payment_cards(services, account_id)
    errors = NO_ERRORS
    if error is not None:
        fields = {"plan_code": "plan_code", "saved_payment_card": "saved_payment_card"}
        errors = form_errors(error, locale_of(request), fields=fields)
    context = {
        "card": card,
        "plans": plans,
        "saved": [each for each in saved if not each.expired],
        "errors": errors,
        "chosen_plan": chosen_plan,
        # One checkout, one key, issued with the form (kept when the form comes back refused).
        "idempotency_key": key or services.new_id(),
    }
    return render(request, "renew.html", context, 200 if error is None else status_for(error))


@router.get(CARDS_PATH + "/{card_id}/renew")
async def renew_page(request: Request, account_id: AccountId, card_id: str) -> Response:
    card = await _linked_card(request, account_id, card_id[:ID_LENGTH_MAX])
    if card is None:
        raise card_unknown()
    return await _renew_page(request, account_id, card)


@router.post(CARDS_PATH + "/{card_id}/renew")
async def renew(request: Request, account_id: AccountId, card_id: str) -> Response:
    form = await request.form()
    plan_code = text_field(form, "plan_code", PLAN_CODE_LENGTH_MAX)
    saved_id = text_field(form, "saved_payment_card", ID_LENGTH_MAX)
    key = text_field(form, "idempotency_key", IDEMPOTENCY_KEY_LENGTH_MAX)
    services = services_of(request)
    try:
        renewal = await saved_payment_cards.renew_with_saved_card(
            services,
            account_id,
            card_id=card_id[:ID_LENGTH_MAX],
            plan_code=plan_code,
            saved_id=saved_id,
            idempotency_key=key,
            channel=sales_channel(request),
        )
    except TopupError as error:
        card = await _linked_card(request, account_id, card_id[:ID_LENGTH_MAX])
        if card is None:
            raise
        return await _renew_page(
            request, account_id, card, error=error, chosen_plan=plan_code, key=key
        )
    return RedirectResponse(f"/renewals/{renewal.id}", status_code=303)
