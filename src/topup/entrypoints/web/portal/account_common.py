"""What the account's pages share: the services, the signed-in account, form fields, rendering
without caching, and showing a card's number to its owner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import phonenumbers
from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from topup.domain.callers import Caller
from topup.domain.errors import InvariantError, TopupError
from topup.entrypoints.http.problems import status_of
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sessions import require_account
from topup.services.context import Services

NO_STORE = {"cache-control": "no-store"}  # personal pages: never kept by a browser or a proxy


def services_of(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


def account_id_of(caller: Annotated[Caller, Depends(require_account)]) -> str:
    if caller.account_id is None:
        raise InvariantError("a signed-in session without an account")
    return caller.account_id


AccountId = Annotated[str, Depends(account_id_of)]


def text_field(form: FormData, name: str, length_max: int) -> str:
    """A form's text field, cut to ``length_max`` (the service says what is wrong with it)."""
    value = form.get(name)
    return value[:length_max] if isinstance(value, str) else ""


def locale_of(request: Request) -> str:
    return renderer_of(request).page(request).locale


def status_for(error: TopupError) -> int:
    return status_of(error)


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> Response:
    """A page of ``templates/portal/account/``, never cached."""
    values = {"card_number": card_number_shown, **(context or {})}
    return renderer_of(request).render(
        request, f"portal/account/{template}", values, status_code=status, headers=NO_STORE
    )


def card_number_shown(e164: str) -> str:
    """``+60123456789`` -> ``+60 12-345 6789``, as its owner writes it."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
