"""Reminders' pages (Babel domain ``portal_reminders``).

Signed in (``signed_in_router``, mounted behind ``require_account``):
- ``/accounts/reminders``: the account's linked cards x channels (SMS, e-mail, the app's
  notifications) as checkboxes, all on until turned off; and the app's push notifications: the
  script asks the browser for a Web Push subscription to the VAPID public key the page gives,
  and posts it (``/accounts/reminders/push``); turning them off is a form (no script needed).

Anyone (``router``), from an e-mail's link:
- ``/reminders/unsubscribe?token=...``: GET shows what the link turns off and a button; the
  button's POST (a form with its CSRF token) turns it off. No sign-in, no JavaScript. The
  RFC 8058 one-click POST goes to the API (``/api/v1/reminders/unsubscribe``), which takes no
  form.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import InputError, TopupError
from topup.domain.reminders import CHANNELS
from topup.entrypoints.web.portal.account_common import (
    NO_STORE,
    AccountId,
    card_number_shown,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.entrypoints.web.shared.language import page_language
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sessions import require_account
from topup.services.reminders import choices

router = APIRouter()
signed_in_router = APIRouter(dependencies=[Depends(require_account)])

PREFERENCES_PATH = "/accounts/reminders"
PUSH_PATH = PREFERENCES_PATH + "/push"
UNSUBSCRIBE_PATH = choices.UNSUBSCRIBE_PAGE
NOTICES = frozenset({"saved", "push_on", "push_off"})
CHOICE_LENGTH_MAX = 120
CHOICES_MAX = choices.CARDS_SHOWN_MAX * len(CHANNELS)
PUSH_BODY_LENGTH_MAX = 4000


def _render(
    request: Request, template: str, context: dict[str, object], status: int = 200
) -> Response:
    values = {"card_number": card_number_shown, **context}
    return renderer_of(request).render(
        request, f"portal/reminders/{template}", values, status_code=status, headers=NO_STORE
    )


async def _preferences_page(
    request: Request, account_id: str, *, notice: str = "", error: TopupError | None = None
) -> Response:
    services = services_of(request)
    cards = await choices.card_channels(services, account_id)
    subscription = await choices.push_subscription(services, account_id)
    push_key = services.push.public_key if services.push is not None else ""
    errors = NO_ERRORS if error is None else form_errors(error, page_language(request))
    context: dict[str, object] = {
        "cards": cards,
        "channels": [channel.value for channel in CHANNELS],
        "push_on": subscription is not None,
        "push_key": push_key,
        "notice": notice if notice in NOTICES else None,
        "errors": errors,
    }
    return _render(
        request, "preferences.html", context, 200 if error is None else status_for(error)
    )


@signed_in_router.get(PREFERENCES_PATH)
async def preferences(request: Request, account_id: AccountId, notice: str = "") -> Response:
    return await _preferences_page(request, account_id, notice=notice)


@signed_in_router.post(PREFERENCES_PATH)
async def save_preferences(request: Request, account_id: AccountId) -> Response:
    """Every checkbox of the form: a ticked one is ``on=<card id>:<channel>``."""
    form = await request.form()
    chosen = []
    for value in form.getlist("on")[:CHOICES_MAX]:
        if isinstance(value, str) and ":" in value:
            card_id, _, channel = value[:CHOICE_LENGTH_MAX].partition(":")
            chosen.append((card_id, channel))
    try:
        await choices.save_card_channels(services_of(request), account_id, chosen)
    except TopupError as error:
        return await _preferences_page(request, account_id, error=error)
    return RedirectResponse(PREFERENCES_PATH + "?notice=saved", status_code=303)


@signed_in_router.post(PUSH_PATH)
async def save_push(request: Request, account_id: AccountId) -> Response:
    """The browser's subscription, as the script posts it (JSON, with the CSRF header)."""
    body = (await request.body())[:PUSH_BODY_LENGTH_MAX]
    try:
        data = json.loads(body)
        keys = data.get("keys", {}) if isinstance(data, dict) else {}
        subscription = choices.check_subscription(
            str(data.get("endpoint", "")), str(keys.get("p256dh", "")), str(keys.get("auth", ""))
        )
    except (ValueError, AttributeError, TopupError):
        error = InputError(
            "this browser's push subscription is not valid",
            code="push_subscription_invalid",
            field="subscription",
        )
        return Response(
            json.dumps({"code": error.code}),
            status_code=400,
            media_type="application/json",
            headers=NO_STORE,
        )
    await choices.save_push_subscription(services_of(request), account_id, subscription)
    return Response(status_code=204, headers=NO_STORE)


@signed_in_router.post(PUSH_PATH + "/off")
async def push_off(request: Request, account_id: AccountId) -> Response:
    await choices.forget_push_subscription(services_of(request), account_id)
    return RedirectResponse(PREFERENCES_PATH + "?notice=push_off", status_code=303)


# --- unsubscribing from an e-mail's link ---------------------------------------------------


def _token_of(request: Request, form_token: str = "") -> str:
    query_token = request.query_params.get("token", "")
    return (form_token or query_token)[: choices.TOKEN_LENGTH_MAX + 1]


@router.get(UNSUBSCRIBE_PATH)
async def unsubscribe_page(request: Request) -> Response:
    token = _token_of(request)
    try:
        card, channel, enabled = await choices.unsubscribed_card(services_of(request), token)
    except TopupError as error:
        return _render(request, "unsubscribe.html", {"invalid": True}, status_for(error))
    context: dict[str, object] = {
        "invalid": False,
        "token": token,
        "number": card_number_shown(card.msisdn),
        "channel": channel.value,
        "enabled": enabled,
        "done": False,
    }
    return _render(request, "unsubscribe.html", context)


@router.post(UNSUBSCRIBE_PATH)
async def unsubscribe(request: Request) -> Response:
    form = await request.form()
    token = _token_of(request, text_field(form, "token", choices.TOKEN_LENGTH_MAX + 1))
    try:
        card, channel = await choices.unsubscribe(services_of(request), token)
    except TopupError as error:
        return _render(request, "unsubscribe.html", {"invalid": True}, status_for(error))
    context: dict[str, object] = {
        "invalid": False,
        "token": token,
        "number": card_number_shown(card.msisdn),
        "channel": channel.value,
        "enabled": False,
        "done": True,
    }
    return _render(request, "unsubscribe.html", context)
