"""The signed-in account's saved payment cards: listed (brand, last four digits, expiry; never a
number), saved, removed. A payment card is saved from a PSP token only: the one the browser got
from the sandbox PSP's tokeniser (the card's details are typed in fields without a name, so the
form never sends them here; the script sends them to the PSP and posts the token), or the one
that paid a renewal of the account's cards (from its receipt line, without JavaScript)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import TopupError
from topup.entrypoints.web.portal.account_common import (
    AccountId,
    locale_of,
    render,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.services import saved_payment_cards

router = APIRouter()

PAYMENT_CARDS_PATH = "/accounts/payment-cards"
TOKENISER_URL = "/sandbox/psp/v1/tokens"  # the sandbox PSP's, as the checkout uses it
ID_LENGTH_MAX = 64
NOTICES = frozenset({"saved", "removed"})
FIELDS = {
    "payment.token": "number",
    "payment.card_number": "number",
    "payment.expiry": "expiry",
    "payment.cvc": "cvc",
}


async def _page(
    request: Request, account_id: str, *, error: TopupError | None = None, notice: str = ""
) -> Response:
    saved = await saved_payment_cards.saved_payment_cards(services_of(request), account_id)
    errors = NO_ERRORS
    if error is not None:
        errors = form_errors(error, locale_of(request), fields=FIELDS)
    context = {
        "saved": saved,
        "errors": errors,
        "notice": notice if notice in NOTICES else None,
        "tokeniser_url": TOKENISER_URL,
    }
    return render(
        request, "payment_cards.html", context, 200 if error is None else status_for(error)
    )


@router.get(PAYMENT_CARDS_PATH)
async def payment_cards(request: Request, account_id: AccountId, notice: str = "") -> Response:
    return await _page(request, account_id, notice=notice)


@router.post(PAYMENT_CARDS_PATH)
async def save(request: Request, account_id: AccountId) -> Response:
    """Save the payment card a PSP token stands for (from the browser's tokeniser)."""
    form = await request.form()
    token = text_field(form, "payment_token", saved_payment_cards.PAYMENT_TOKEN_LENGTH_MAX + 1)
    try:
        await saved_payment_cards.save_payment_token(services_of(request), account_id, token)
    except TopupError as error:
        return await _page(request, account_id, error=error)
    return RedirectResponse(PAYMENT_CARDS_PATH + "?notice=saved", status_code=303)


@router.post(PAYMENT_CARDS_PATH + "/from-renewal")
async def save_from_renewal(request: Request, account_id: AccountId) -> Response:
    """Save the payment card that paid a renewal of one of the account's cards."""
    form = await request.form()
    renewal_id = text_field(form, "renewal_id", ID_LENGTH_MAX)
    try:
        await saved_payment_cards.save_from_renewal(services_of(request), account_id, renewal_id)
    except TopupError as error:
        return await _page(request, account_id, error=error)
    return RedirectResponse(PAYMENT_CARDS_PATH + "?notice=saved", status_code=303)


@router.post(PAYMENT_CARDS_PATH + "/{saved_id}/remove")
async def remove(request: Request, account_id: AccountId, saved_id: str) -> Response:
    try:
        await saved_payment_cards.remove_saved_payment_card(
            services_of(request), account_id, saved_id[:ID_LENGTH_MAX]
        )
    except TopupError as error:
        return await _page(request, account_id, error=error)
    return RedirectResponse(PAYMENT_CARDS_PATH + "?notice=removed", status_code=303)
