"""The home page: enter a card number (any form, or the ICCID) to renew it (R2).

The number travels in the form's body only; once the card is found, the pages that follow carry
an opaque checkout reference (``renewal_checkout``), never the number. Looking a card up counts
against the API's rule (``check_card_lookup``): per client and per card."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.callers import ANONYMOUS
from topup.domain.errors import TopupError
from topup.entrypoints.http.problems import status_of
from topup.entrypoints.http.rate_limits import check_card_lookup
from topup.entrypoints.web.portal.renewal_checkout import card_path, new_reference
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors, form_errors
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sessions import signed_in
from topup.services import queries
from topup.services.context import Services

router = APIRouter()
CARD_NUMBER_LENGTH_MAX = 40  # as the API's path parameter
CARD_NUMBER_FIELD = "card_number"


def _home(
    request: Request, *, errors: FormErrors = NO_ERRORS, typed: str = "", status_code: int = 200
) -> Response:
    return renderer_of(request).render(
        request, "portal/home.html", {"errors": errors, "typed": typed}, status_code=status_code
    )


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    return _home(request)


@router.post("/renew", include_in_schema=False)
async def look_up(request: Request) -> Response:
    """The card named in the form: on to its page, or the home page again with why not."""
    services: Services = request.app.state.application.services
    form = await request.form()
    value = form.get(CARD_NUMBER_FIELD)
    typed = value.strip()[:CARD_NUMBER_LENGTH_MAX] if isinstance(value, str) else ""
    caller = await signed_in(request) or ANONYMOUS
    try:
        await check_card_lookup(request, caller, typed)
        card = await queries.balance(services, typed)  # its id only: nothing of it is shown
    except TopupError as error:
        locale = renderer_of(request).page(request).locale
        errors = form_errors(error, locale, fields={"card_number": CARD_NUMBER_FIELD})
        if error.field is None and error.code != "rate_limited":
            errors = form_errors(error, locale, fields={error.code: CARD_NUMBER_FIELD})
        headers = {}
        if error.code == "rate_limited":
            headers["retry-after"] = error.params.get("retry_after_s", "60")
        response = _home(request, errors=errors, typed=typed, status_code=status_of(error))
        response.headers.update(headers)
        return response
    reference = new_reference(services, card.id)
    return RedirectResponse(card_path(reference), status_code=303)
