"""The fleet-wide auto-renewal policy (owners and admins): one plan for every card, or a plan per
card kind, paid by the organisation's saved payment card, applied to the organisation's cards
(``policy.request_fleet_policy``: a request the worker applies in batches, at most
``fleet_policy_cards_max`` cards; the page follows its progress by Server-Sent Events, and
without JavaScript reloads itself while it runs); and choosing that payment card among the
admin's own saved payment cards. Viewers see the policy's reach, its progress and the payment
card, without the forms."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.cards import CardKind
from topup.domain.errors import TopupError
from topup.entrypoints.web.portal.account_common import (
    AccountId,
    locale_of,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.portal.fleet_common import (
    ID_LENGTH_MAX,
    ORGANISATIONS_PATH,
    code_text,
    fleet_path,
    render,
)
from topup.entrypoints.web.portal.fleet_events import ProgressStream, version_hash
from topup.entrypoints.web.portal.status_events import stream_response
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.services import queries, saved_payment_cards
from topup.services.fleets import organisations, policy
from topup.services.fleets.bulk import BULK_CHANNEL
from topup.services.fleets.policy import PolicyChoice

router = APIRouter()

POLICY_PATH = ORGANISATIONS_PATH + "/{organisation_id}/auto-renewal"
PLAN_CODE_LENGTH_MAX = 64
LEAVE = ""  # a kind's choice that leaves its cards as they are
FIELDS = {"plan": "plan_one", "payment": "payment_card", "saved_payment_card": "payment_card"}
NOTICES = frozenset({"payment_card", "policy_started"})
NO_JAVASCRIPT_RELOAD_S = 5  # a running policy's page reloads itself this often without a script


async def _page(
    request: Request,
    account_id: str,
    organisation_id: str,
    *,
    error: TopupError | None = None,
    values: dict[str, str] | None = None,
    notice: str = "",
) -> Response:
    services = services_of(request)
    locale = locale_of(request)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    _, plans = await queries.list_plans(services, card_number=None, channel=BULK_CHANNEL)
    paying = await policy.payment_card_of(services, account_id, organisation_id)
    latest = await policy.latest_policy_request(services, account_id, organisation_id)
    mine = (
        await saved_payment_cards.saved_payment_cards(services, account_id)
        if member.role.may_manage
        else []
    )
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "may_manage": member.role.may_manage,
        "plans": [offer for offer in plans if offer.plan.kind.value != "postpaid_bill"],
        "paying": paying,
        "mine": mine,
        "covered": await policy.policy_counts(services, account_id, organisation_id),
        "latest": latest,
        "version": version_hash(latest.version()) if latest is not None else "",
        "events_path": fleet_path(organisation_id, "/auto-renewal/events"),
        "reload_s": NO_JAVASCRIPT_RELOAD_S,
        "refusal_text": lambda code, params: code_text(code, params, locale),
        "values": values or {"mode": "one"},
        "errors": NO_ERRORS if error is None else form_errors(error, locale, fields=FIELDS),
        "notice": notice if notice in NOTICES else None,
        "current": "policy",
    }
    status = 200 if error is None else status_for(error)
    return render(request, "policy.html", context, status)


@router.get(POLICY_PATH)
async def page(
    request: Request, account_id: AccountId, organisation_id: str, notice: str = ""
) -> Response:
    return await _page(request, account_id, organisation_id[:ID_LENGTH_MAX], notice=notice)


@router.post(POLICY_PATH)
async def apply(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    """Ask for the policy to be applied (the worker does it); the page shows its progress."""
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    form = await request.form()
    values = {
        "mode": "kinds" if text_field(form, "mode", 8) == "kinds" else "one",
        "plan_one": text_field(form, "plan_one", PLAN_CODE_LENGTH_MAX),
        "plan_prepaid": text_field(form, "plan_prepaid", PLAN_CODE_LENGTH_MAX),
        "plan_postpaid": text_field(form, "plan_postpaid", PLAN_CODE_LENGTH_MAX),
    }
    if values["mode"] == "one":
        choice = PolicyChoice.one_plan(values["plan_one"]) if values["plan_one"] else PolicyChoice()
    else:
        chosen = {
            CardKind.PREPAID: values["plan_prepaid"],
            CardKind.POSTPAID: values["plan_postpaid"],
        }
        choice = PolicyChoice({kind: code for kind, code in chosen.items() if code != LEAVE})
    services = services_of(request)
    try:
        await policy.request_fleet_policy(services, account_id, organisation_id, choice)
    except TopupError as error:
        if error.code == "organisation_unknown":
            raise
        return await _page(request, account_id, organisation_id, error=error, values=values)
    return RedirectResponse(
        fleet_path(organisation_id, "/auto-renewal?notice=policy_started"), status_code=303
    )


@router.get(POLICY_PATH + "/events")
async def events(
    request: Request, account_id: AccountId, organisation_id: str, since: str = ""
) -> Response:
    """The progress of the organisation's newest policy request, live."""
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    services = services_of(request)
    # Not a member: not found before any stream starts.
    await policy.latest_policy_request(services, account_id, organisation_id)

    async def look() -> tuple[str, bool]:
        latest = await policy.latest_policy_request(services, account_id, organisation_id)
        return ("", True) if latest is None else (latest.version(), latest.finished)

    return stream_response(ProgressStream(request, look, since=since[:12]))


@router.post(POLICY_PATH + "/payment-card")
async def choose_payment_card(
    request: Request, account_id: AccountId, organisation_id: str
) -> Response:
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    form = await request.form()
    saved_id = text_field(form, "payment_card", ID_LENGTH_MAX)
    try:
        await organisations.choose_payment_card(
            services_of(request), account_id, organisation_id, saved_id
        )
    except TopupError as error:
        if error.code == "organisation_unknown":
            raise
        return await _page(request, account_id, organisation_id, error=error)
    return RedirectResponse(
        fleet_path(organisation_id, "/auto-renewal?notice=payment_card"), status_code=303
    )
