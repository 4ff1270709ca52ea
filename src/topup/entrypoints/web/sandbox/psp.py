"""The sandbox PSP's hosted payment page: where a payer without JavaScript types the card's
details (as a real PSP's page, reached by redirect, on the PSP's own origin), checked with the
same rules and codes as everywhere (``domain.payment_card``), tokenised here by the sandbox
gateway, and handed back to the merchant's return address as a token, in a form's body.

The merchant names its return address (a path of this site), and the amount only to show it:
the charge is the merchant's, for its own amount."""

from __future__ import annotations

import unicodedata
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from topup.domain.errors import InvariantError, NotFoundError, TopupError
from topup.domain.money import Money
from topup.domain.payment_card import check_card_details, normalize_card_number
from topup.entrypoints.http.problems import status_of
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors, form_errors
from topup.entrypoints.web.shared.language import local_path
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.ports import PaymentCardDetails
from topup.services.context import Services

router = APIRouter()
CHECKOUT_PATH = "/sandbox/psp/checkout"
RETURN_LENGTH_MAX = 600
AMOUNT_MINOR_MAX = 10**12
TYPED_LENGTH_MAX = 40
FIELDS = {"payment.card_number": "card_number", "payment.expiry": "expiry", "payment.cvc": "cvc"}
_SEPARATORS = "/.-"


def parse_expiry(text: str) -> tuple[int, int]:
    """``MM/YY`` (or ``MM/YYYY``, ``MMYY``, ``MM-YY``, ``MM YY``) as (month, year); a part that is
    not a number is -1 (the checks then say which). The payment form's script reads it alike."""
    typed = "".join(c for c in unicodedata.normalize("NFKC", text) if not c.isspace())
    parts = [typed]
    for separator in _SEPARATORS:
        if separator in typed:
            parts = typed.split(separator)
            break
    if len(parts) == 1 and _digits(typed) and len(typed) in {4, 6}:
        parts = [typed[:2], typed[2:]]
    if len(parts) != 2:
        return -1, -1
    month = int(parts[0]) if _digits(parts[0]) and len(parts[0]) <= 2 else -1
    year = int(parts[1]) if _digits(parts[1]) and len(parts[1]) in {2, 4} else -1
    return month, year


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _sandbox(request: Request) -> Services:
    services: Services = request.app.state.application.services
    if not services.gateway.name.startswith("sandbox"):
        raise NotFoundError("no sandbox gateway here", code="not_found")
    return services


def _amount(amount_minor: str, currency: str) -> Money | None:
    if not _digits(amount_minor) or int(amount_minor) > AMOUNT_MINOR_MAX:
        return None
    try:
        return Money(int(amount_minor), currency)
    except InvariantError:
        return None


def _page(
    request: Request,
    *,
    return_to: str,
    amount: Money | None,
    errors: FormErrors = NO_ERRORS,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return renderer_of(request).render(
        request,
        "sandbox/psp/checkout.html",
        {
            "return_to": return_to,
            "amount": amount,
            "errors": errors,
            "typed": typed or {},
            "checkout_path": CHECKOUT_PATH,
        },
        status_code=status_code,
    )


@router.get(CHECKOUT_PATH, include_in_schema=False)
async def hosted_page(
    request: Request,
    return_to: Annotated[str, Query(max_length=RETURN_LENGTH_MAX)] = "/",
    amount_minor: Annotated[str, Query(max_length=13)] = "",
    currency: Annotated[str, Query(max_length=3)] = "",
) -> Response:
    _sandbox(request)
    return _page(request, return_to=local_path(return_to), amount=_amount(amount_minor, currency))


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:TYPED_LENGTH_MAX] if isinstance(value, str) else ""


@router.post(CHECKOUT_PATH, include_in_schema=False)
async def take_details(request: Request) -> Response:
    """Check the details, tokenise them, and hand the token back to the merchant."""
    services = _sandbox(request)
    form = await request.form()
    return_value = form.get("return_to")
    return_to = local_path(
        return_value[:RETURN_LENGTH_MAX] if isinstance(return_value, str) else ""
    )
    amount = _amount(_field(form, "amount_minor"), _field(form, "currency"))
    number, expiry, cvc = _field(form, "card_number"), _field(form, "expiry"), _field(form, "cvc")
    month, year = parse_expiry(expiry)
    digits = normalize_card_number(number)
    today = services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)).date()
    try:
        details = PaymentCardDetails(number=digits, expiry_month=month, expiry_year=year, cvc=cvc)
        check_card_details(
            details,
            today=today,
            holder_name_required=False,
            holder_name=None,
            facts=services.card_facts(digits),
        )
        clean_cvc = unicodedata.normalize("NFKC", cvc).strip()
        details = PaymentCardDetails(digits, month, year, clean_cvc)
        payment_token = await services.gateway.tokenize(details)
    except TopupError as error:
        locale = renderer_of(request).page(request).locale
        return _page(
            request,
            return_to=return_to,
            amount=amount,
            errors=form_errors(error, locale, fields=FIELDS),
            typed={"card_number": number, "expiry": expiry},
            status_code=status_of(error),
        )
    return renderer_of(request).render(
        request,
        "sandbox/psp/return.html",
        {"return_to": return_to, "payment_token": payment_token, "amount": amount},
    )
