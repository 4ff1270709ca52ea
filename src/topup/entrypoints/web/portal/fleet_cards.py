"""Adding a card to the fleet by a code sent by SMS to its number, and taking a card out of it
(owners and admins; a viewer sees neither form, and the services refuse a viewer's post).

Adding is the account's "link a card" flow (``account_cards``) with its limits: codes per client
address and account, look-ups of card numbers, and codes per card (in the service). The card's
number travels only in POST bodies; once added, the fleet's page names the card by its opaque
id. Taking a card out asks first (a page that says what follows: the organisation's
auto-renewal of the card stops), then posts."""

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
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.portal.fleet_common import (
    ID_LENGTH_MAX,
    ORGANISATIONS_PATH,
    fleet_path,
    render,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.services import accounts
from topup.services.fleets import organisations, policy
from topup.services.fleets.organisations import card_not_in_fleet

router = APIRouter()

ADD_PATH = ORGANISATIONS_PATH + "/{organisation_id}/cards/add"
REMOVE_PATH = ORGANISATIONS_PATH + "/{organisation_id}/cards/{card_id}/remove"
CARD_NUMBER_LENGTH_MAX = 40
CODE_LENGTH_MAX = 16
FIELDS = {"card_number": "card_number", "code": "code"}
CODE_FIELD = "code"  # an error about the code is shown on the code's page; others on the first


def _organisation_id(organisation_id: str) -> str:
    return organisation_id[:ID_LENGTH_MAX]


async def _add_page(
    request: Request,
    account_id: str,
    organisation_id: str,
    *,
    template: str = "add_card.html",
    error: TopupError | None = None,
    card_number: str = "",
    code: str = "",
    sent: accounts.LinkCodeSent | None = None,
) -> Response:
    services = services_of(request)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    errors = NO_ERRORS if error is None else form_errors(error, locale_of(request), fields=FIELDS)
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "may_manage": member.role.may_manage,
        "errors": errors,
        "card_number": card_number,
        "code": code,
        "sent": sent,
        "current": "fleet",
    }
    status = 200 if error is None else status_for(error)
    return render(request, template, context, 202 if sent is not None else status)


@router.get(ADD_PATH)
async def add_page(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    return await _add_page(request, account_id, _organisation_id(organisation_id))


@router.post(ADD_PATH)
async def start_add(
    request: Request, account_id: AccountId, caller: SignedIn, organisation_id: str
) -> Response:
    """Send the code to the card's number (the limits of the account's link-a-card flow)."""
    organisation_id = _organisation_id(organisation_id)
    form = await request.form()
    card_number = text_field(form, "card_number", CARD_NUMBER_LENGTH_MAX)
    services = services_of(request)
    try:
        await check_sms_code_request(request, caller, card_number)
        sent = await organisations.start_card_add(
            services, account_id, organisation_id, card_number
        )
    except TopupError as error:
        if error.code == "organisation_unknown":
            raise
        return await _add_page(
            request, account_id, organisation_id, error=error, card_number=card_number
        )
    return await _add_page(
        request,
        account_id,
        organisation_id,
        template="add_card_code.html",
        card_number=card_number,
        sent=sent,
    )


@router.post(ADD_PATH + "/verify")
async def finish_add(
    request: Request, account_id: AccountId, caller: SignedIn, organisation_id: str
) -> Response:
    organisation_id = _organisation_id(organisation_id)
    form = await request.form()
    card_number = text_field(form, "card_number", CARD_NUMBER_LENGTH_MAX)
    code = text_field(form, "code", CODE_LENGTH_MAX)
    services = services_of(request)
    try:
        await check_card_lookup(request, caller, card_number)
        card = await organisations.finish_card_add(
            services, account_id, organisation_id, card_number, code
        )
    except TopupError as error:
        if error.code == "organisation_unknown":
            raise
        # A wrong, expired or spent code, or too many requests: the code's page again. The
        # card itself refused (in a fleet since, unknown, a viewer's post): the first page.
        on_code = error.field == CODE_FIELD or error.code == "rate_limited"
        return await _add_page(
            request,
            account_id,
            organisation_id,
            template="add_card_code.html" if on_code else "add_card.html",
            error=error,
            card_number=card_number,
            code=code if on_code else "",
        )
    return RedirectResponse(fleet_path(organisation_id, f"/fleet?added={card.id}"), status_code=303)


# --- taking a card out -----------------------------------------------------------------------


async def _remove_page(
    request: Request,
    account_id: str,
    organisation_id: str,
    card_id: str,
    *,
    error: TopupError | None = None,
) -> Response:
    services = services_of(request)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    card = await organisations.fleet_card(services, account_id, organisation_id, card_id)
    auto = (await policy.auto_renewals_of(services, account_id, organisation_id, [card.id])).get(
        card.id
    )
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "may_manage": member.role.may_manage,
        "card": card,
        "auto_by_organisation": auto is not None and auto.enabled and auto.by_organisation,
        "errors": NO_ERRORS if error is None else form_errors(error, locale_of(request)),
        "current": "fleet",
    }
    return render(request, "remove_card.html", context, 200 if error is None else status_for(error))


@router.get(REMOVE_PATH)
async def remove_page(
    request: Request, account_id: AccountId, organisation_id: str, card_id: str
) -> Response:
    """Ask before taking the card out (a viewer is told it is not theirs to do)."""
    return await _remove_page(
        request, account_id, _organisation_id(organisation_id), card_id[:ID_LENGTH_MAX]
    )


@router.post(REMOVE_PATH)
async def remove(
    request: Request, account_id: AccountId, organisation_id: str, card_id: str
) -> Response:
    organisation_id, card_id = _organisation_id(organisation_id), card_id[:ID_LENGTH_MAX]
    try:
        removed = await organisations.remove_card(
            services_of(request), account_id, organisation_id, card_id
        )
    except TopupError as error:
        if error.code in {"organisation_unknown", card_not_in_fleet().code}:
            raise
        return await _remove_page(request, account_id, organisation_id, card_id, error=error)
    notice = "card_removed_auto_renewal_stopped" if removed.auto_renewal_stopped else "card_removed"
    return RedirectResponse(fleet_path(organisation_id, f"/fleet?notice={notice}"), status_code=303)
