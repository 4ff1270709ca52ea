"""Finding a forgotten card number: by receipt, by registered e-mail, by support (R8).

- ``/recover``: the three ways, with the operator's customer-service contacts.
- ``/recover/receipt``: the receipt's number and verification code (in the POST body) show the
  card's number in full; a wrong code, an unknown and an unpaid number get one answer.
- ``/recover/email``: the numbers of the cards registered with an address are e-mailed to it
  (``services.recovery``); the page answers the same whether or not it is registered, and the
  address never reaches a URL (the answer is a redirect to ``/recover/email/sent``).

Both forms are limited as the API's recovery is: ``recovery_per_hour_max`` per client address
(and account), the e-mail also per address (the API's rule ``recovery``, shared with it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.accounts import EMAIL_LENGTH_MAX
from topup.domain.callers import ANONYMOUS, Caller
from topup.domain.errors import TopupError
from topup.entrypoints.http.rate_limits import check_caller_rate, check_rate
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors, form_errors
from topup.entrypoints.web.shared.language import page_language
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sessions import signed_in
from topup.services import recovery
from topup.services.context import Services
from topup.services.receipts import VERIFICATION_CODE_TYPED_LENGTH_MAX, parse_email

router = APIRouter()

RECOVERY = "recovery"  # the API's rule (entrypoints/api/recovery.py): one count for both
RECEIPT_RECOVERY = "receipt_recovery"  # attempts at a receipt's code, per client address
RECEIPT_NUMBER_TYPED_LENGTH_MAX = 40  # R-XXXX-XXXX-XXXX with blanks, as someone may type it
SENT_PATH = "/recover/email/sent"
NO_STORE = {"cache-control": "no-store"}
_RECEIPT_FIELDS = {"receipt_number": "receipt_number", "verification_code": "verification_code"}

FormText = Annotated[str, Form()]


def _services(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


async def _caller(request: Request) -> Caller:
    return await signed_in(request) or ANONYMOUS


def _status_of(error: TopupError) -> int:
    if error.code == "rate_limited":
        return 429
    return 404 if error.code == "receipt_unknown" else 422


def _retry_after(error: TopupError) -> dict[str, str]:
    retry_after = error.params.get("retry_after_s")
    return {"retry-after": retry_after} if retry_after else {}


@router.get("/recover")
async def ways(request: Request) -> Response:
    return renderer_of(request).render(request, "portal/recovery/ways.html")


@router.get("/recover/receipt")
async def receipt_form(request: Request) -> Response:
    return _receipt_form(request, NO_ERRORS)


def _receipt_form(
    request: Request,
    errors: FormErrors,
    receipt_number: str = "",
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return renderer_of(request).render(
        request,
        "portal/recovery/receipt.html",
        {"errors": errors, "receipt_number": receipt_number},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )


@router.post("/recover/receipt")
async def receipt_found(
    request: Request, receipt_number: FormText = "", verification_code: FormText = ""
) -> Response:
    """The card of the receipt, in full, for the holder of its number and code."""
    services = _services(request)
    typed_number = receipt_number.strip()[:RECEIPT_NUMBER_TYPED_LENGTH_MAX]
    try:
        await check_caller_rate(
            request,
            await _caller(request),
            RECEIPT_RECOVERY,
            limit=services.limits.rates.recovery_per_hour_max,
            window_s=recovery.RECOVERY_WINDOW_S,
        )
        found = await recovery.card_number_by_receipt(
            services, typed_number, verification_code[:VERIFICATION_CODE_TYPED_LENGTH_MAX]
        )
    except TopupError as error:
        errors = form_errors(error, page_language(request), fields=_RECEIPT_FIELDS)
        return _receipt_form(
            request,
            errors,
            typed_number,
            status_code=_status_of(error),
            headers=_retry_after(error),
        )
    return renderer_of(request).render(
        request, "portal/recovery/card.html", {"found": found}, headers=NO_STORE
    )


@router.get("/recover/email")
async def email_form(request: Request) -> Response:
    return _email_form(request, NO_ERRORS)


def _email_form(
    request: Request,
    errors: FormErrors,
    email: str = "",
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return renderer_of(request).render(
        request,
        "portal/recovery/email.html",
        {"errors": errors, "email": email},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )


@router.post("/recover/email")
async def email_sent(request: Request, email: FormText = "") -> Response:
    """Mail the numbers registered with ``email`` to it; the same answer whether or not it is."""
    services = _services(request)
    typed = email.strip()[:EMAIL_LENGTH_MAX]
    locale = page_language(request)
    limit = services.limits.rates.recovery_per_hour_max
    window_s = recovery.RECOVERY_WINDOW_S
    try:
        address = parse_email(typed)
        await check_caller_rate(
            request, await _caller(request), RECOVERY, limit=limit, window_s=window_s
        )
        key = recovery.rate_key(services, address)
        await check_rate(services, RECOVERY, key, limit=limit, window_s=window_s)
    except TopupError as error:
        errors = form_errors(error, locale, fields={"email": "email"})
        return _email_form(
            request, errors, typed, status_code=_status_of(error), headers=_retry_after(error)
        )
    recovery.request_card_numbers(services, address, locale)
    return RedirectResponse(SENT_PATH, status_code=303)


@router.get(SENT_PATH)
async def email_answer(request: Request) -> Response:
    return renderer_of(request).render(request, "portal/recovery/sent.html")
