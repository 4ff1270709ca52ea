"""Paying for a renewal, never twice (R7a), and the payment password / 3-D Secure step (R7b).

Pay: the form names its attempt, and so its idempotency key (``renewal_checkout``). The first
press claims the key (``services.idempotency``), renews (``services.renewals.renew``, under the
claim's id as its own key) and stores what came of it; every later press of the same form — a
double click, a refresh, Back, a second tab, Pay again after the network dropped — waits for the
first if it still runs, then lands where it did. A refusal before anything was recorded (a
debit card paid as credit, a card its issuer keeps at home, a wallet's daily limit) stores
nothing: the same form may be corrected and sent again.

A payment card's number never comes here: the form sends the token the PSP gave the browser
(``payment_token``), or, without JavaScript, is sent to the PSP's hosted payment page, which
comes back here with the token.

Whoever made a renewal may answer its payment password: the answer names the renewal's client
secret in a cookie for its pages only (``Path=/renewals/<id>``), or the payer is its card's
signed-in owner.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from topup.domain.callers import ANONYMOUS
from topup.domain.errors import ConflictError, PaymentError, TopupError
from topup.entrypoints.http.problems import status_of
from topup.entrypoints.http.rate_limits import check_caller_rate, check_rate
from topup.entrypoints.web.portal.renewal import (
    Checkout,
    MethodChoice,
    PlanCode,
    Reference,
    load_checkout,
    method_choices,
    render_pay_page,
    services_of,
)
from topup.entrypoints.web.portal.renewal_checkout import (
    ATTEMPTS_MAX,
    IDEMPOTENCY_SCOPE,
    OUTCOME_MEDIA_TYPE,
    Outcome,
    attempt_of,
    idempotency_key,
    methods_path,
    new_reference,
    pay_path,
    request_fingerprint,
    status_path,
    verify_path,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors, form_errors
from topup.entrypoints.web.shared.language import local_path
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sales_channel import sales_channel
from topup.entrypoints.web.shared.sessions import signed_in
from topup.services import idempotency
from topup.services.access import client_secret_of, visible_renewal
from topup.services.confirmation import confirm_payment
from topup.services.renewals import RenewalRequest, renew
from topup.services.views import RenewalView

router = APIRouter()

RenewalId = Annotated[str, Path(min_length=1, max_length=36)]
PAY_WAIT_S = 20.0  # how long a second press waits for the first one to finish
PAY_WAIT_STEP_S = 0.2
RENEWAL_COOKIE = "topup_renewal"
RENEWAL_COOKIE_MAX_AGE_S = 86_400
# The sandbox PSP's hosted payment page (a real PSP's would be on its own origin).
HOSTED_PAYMENT_PAGE = "/sandbox/psp/checkout"
TOKEN_LENGTH_MAX = 1_000
WALLET_ACCOUNT_LENGTH_MAX = 40
ANSWER_LENGTH_MAX = 64
MINUTE_S = 60
IN_USE = "idempotency_key_in_use"
# The services' field names, as the payment form's.
PAY_FIELDS = {
    "payment.card_number": "card_number",
    "payment.expiry": "expiry",
    "payment.cvc": "cvc",
    "payment.token": "card_number",
    "payment.wallet_account": "wallet_account",
    "payment.method": "method",
    "payment": "card_number",
}
# Refusals whose answer is another method (listed under ``ALTERNATIVES`` on the form).
ALTERNATIVES = "alternatives"
ALTERNATIVES_OFFERED = frozenset(
    {
        "card_is_debit",
        "card_is_credit",
        "international_payments_not_allowed",
        "ewallet_daily_limit_reached",
        "payment_method_locked",
        "amount_above_method_maximum",
        "amount_below_method_minimum",
    }
)
# Refusals after which the same payment card may pay as another method, in one press.
FUNDING_REFUSALS = {"card_is_debit": "debit_card", "card_is_credit": "credit_card"}


def _text(form: FormData, name: str, length_max: int) -> str:
    value = form.get(name)
    return value.strip()[:length_max] if isinstance(value, str) else ""


@router.post("/renew/{reference}/{plan_code}/pay", include_in_schema=False)
async def pay(request: Request, reference: Reference, plan_code: PlanCode) -> Response:
    form = await request.form()
    query = request.query_params
    method_code = _text(form, "method", 64) or query.get("method", "")[:64]
    attempt = attempt_of(form.get("attempt") or query.get("attempt"))
    token = _text(form, "payment_token", TOKEN_LENGTH_MAX)
    wallet_account = _text(form, "wallet_account", WALLET_ACCOUNT_LENGTH_MAX)
    checkout = await load_checkout(request, reference, plan_code)
    choices = method_choices(services_of(request), sales_channel(request), checkout.amount)
    chosen = next((c for c in choices if c.method.code == method_code and c.usable), None)
    if chosen is None:
        return RedirectResponse(methods_path(reference, plan_code), status_code=303)
    if chosen.takes_card and not token:
        return RedirectResponse(_hosted_page(checkout, chosen, attempt), status_code=303)
    return await _pay_once(
        request, checkout, chosen, choices, attempt=attempt, token=token, wallet=wallet_account
    )


def _hosted_page(checkout: Checkout, chosen: MethodChoice, attempt: int) -> str:
    """Where the payer types the card's details without JavaScript: the PSP's own page, which
    comes back to the payment form's address with a token."""
    back = pay_path(checkout.reference, checkout.plan_code)
    back += "?" + urlencode({"method": chosen.method.code, "attempt": str(attempt)})
    amount = checkout.amount
    query = {"return_to": back, "amount_minor": str(amount.minor), "currency": amount.currency}
    return f"{HOSTED_PAYMENT_PAGE}?{urlencode(query)}"


async def _pay_once(
    request: Request,
    checkout: Checkout,
    chosen: MethodChoice,
    choices: list[MethodChoice],
    *,
    attempt: int,
    token: str,
    wallet: str,
) -> Response:
    services = services_of(request)
    key = idempotency_key(request, checkout.reference, checkout.plan_code, attempt)
    fingerprint = request_fingerprint(checkout.card.id, checkout.plan_code)
    deadline = time.monotonic() + PAY_WAIT_S
    while True:
        try:
            claimed = await idempotency.begin(
                services, scope=IDEMPOTENCY_SCOPE, key=key, fingerprint=fingerprint
            )
            break
        except ConflictError as error:
            if error.code != IN_USE:
                raise
            if time.monotonic() > deadline:  # the first press is still being paid
                return _still_paying(request, checkout, chosen, attempt, token, wallet)
            await asyncio.sleep(PAY_WAIT_STEP_S)
    if isinstance(claimed, idempotency.StoredResponse):
        return _after(request, checkout, chosen, choices, attempt, Outcome.decode(claimed.body))
    try:
        view = await renew(
            services,
            RenewalRequest(
                card_number=checkout.card.msisdn,
                plan_code=checkout.plan_code,
                payment=None,
                channel=sales_channel(request),
                idempotency_key=claimed.request_id,
                method=chosen.method.code,
                wallet_account=wallet or None,
                payment_token=token or None,
            ),
        )
    except TopupError as error:
        # Refused before anything was recorded: the same form may be corrected and sent again.
        await idempotency.finish(services, claimed, None)
        return _refused(request, checkout, chosen, choices, attempt, error, token, wallet)
    except Exception:
        await idempotency.finish(services, claimed, None)
        raise
    outcome = _outcome_of(view)
    stored = idempotency.StoredResponse(303, OUTCOME_MEDIA_TYPE, outcome.encode())
    await idempotency.finish(services, claimed, stored)
    return _after(request, checkout, chosen, choices, attempt, outcome)


def _outcome_of(view: RenewalView) -> Outcome:
    payment = view.payment
    return Outcome(
        renewal_id=view.id,
        status=view.status,
        decline_code=view.renewal.decline_code,
        action_url=None if payment is None else payment.action_url,
    )


def _after(
    request: Request,
    checkout: Checkout,
    chosen: MethodChoice,
    choices: list[MethodChoice],
    attempt: int,
    outcome: Outcome,
) -> Response:
    """Where an attempt sends the payer: the payment password, the wallet, the renewal's
    status; or, declined, the form again (the next attempt) with why and what else to do."""
    if outcome.status == "declined":
        code = outcome.decline_code or "payment_declined"
        declined = PaymentError(f"the payment was declined ({code})", code=code)
        locale = renderer_of(request).page(request).locale
        response = render_pay_page(
            request,
            checkout,
            chosen,
            choices,
            attempt=min(attempt + 1, ATTEMPTS_MAX),
            errors=form_errors(declined, locale),
            declined=declined,
            status_code=402,
        )
    else:
        response = RedirectResponse(_next_stop(outcome), status_code=303)
    _remember_renewal(request, response, outcome.renewal_id)
    return response


def _next_stop(outcome: Outcome) -> str:
    status = status_path(outcome.renewal_id)
    if outcome.status != "requires_action":
        return status
    if outcome.action_url is None:
        return verify_path(outcome.renewal_id)  # the payment password / 3-D Secure code
    return local_path(outcome.action_url, default=status)  # the wallet, or the status page


def _remember_renewal(request: Request, response: Response, renewal_id: str) -> None:
    """This browser made the renewal: its pages may show it and take its payment password."""
    cookies = request.app.state.session_cookies
    response.set_cookie(
        RENEWAL_COOKIE,
        client_secret_of(services_of(request), renewal_id),
        max_age=RENEWAL_COOKIE_MAX_AGE_S,
        path=status_path(renewal_id),
        httponly=True,
        samesite="lax",
        secure=cookies.secure,
    )


def _refused(
    request: Request,
    checkout: Checkout,
    chosen: MethodChoice,
    choices: list[MethodChoice],
    attempt: int,
    error: TopupError,
    token: str,
    wallet: str,
) -> Response:
    locale = renderer_of(request).page(request).locale
    fields = dict(PAY_FIELDS)
    if error.code in ALTERNATIVES_OFFERED:
        fields = {error.field or error.code: ALTERNATIVES}
    elif error.field is None:
        fields[error.code] = "card_number" if chosen.takes_card else "wallet_account"
    return render_pay_page(
        request,
        checkout,
        chosen,
        choices,
        attempt=attempt,
        errors=form_errors(error, locale, fields=fields),
        # The same payment card may pay as the method it is, without typing it again.
        payment_token=token if error.code in FUNDING_REFUSALS else "",
        wallet_account=wallet,
        switch_method=FUNDING_REFUSALS.get(error.code),
        status_code=status_of(error),
    )


def _still_paying(
    request: Request,
    checkout: Checkout,
    chosen: MethodChoice,
    attempt: int,
    token: str,
    wallet: str,
) -> Response:
    return renderer_of(request).render(
        request,
        "portal/renewal/paying.html",
        {
            "checkout": checkout,
            "chosen": chosen,
            "attempt": attempt,
            "payment_token": token,
            "wallet_account": wallet,
            "pay_path": pay_path(checkout.reference, checkout.plan_code),
        },
        status_code=202,
        headers={"retry-after": "5"},
    )


# --- the payment password / 3-D Secure step --------------------------------------------------


async def _awaited_renewal(request: Request, renewal_id: str) -> RenewalView:
    caller = await signed_in(request) or ANONYMOUS
    secret = request.cookies.get(RENEWAL_COOKIE)
    return await visible_renewal(services_of(request), caller, renewal_id, secret)


def _awaits_password(view: RenewalView) -> bool:
    return view.status == "requires_action" and (
        view.payment is None or view.payment.action_url is None
    )


def _verify_page(
    request: Request,
    view: RenewalView,
    *,
    errors: FormErrors = NO_ERRORS,
    declined: TopupError | None = None,
    status_code: int = 200,
) -> Response:
    services = services_of(request)
    again = methods_path(new_reference(services, view.renewal.card_id), view.renewal.plan_code)
    return renderer_of(request).render(
        request,
        "portal/renewal/verify.html",
        {
            "view": view,
            "errors": errors,
            "declined": declined,
            "verify_path": verify_path(view.id),
            "status_path": status_path(view.id),
            "again_path": again,
            "sandbox": services.gateway.name.startswith("sandbox"),
        },
        status_code=status_code,
    )


@router.get("/renewals/{renewal_id}/verify", include_in_schema=False)
async def verify_page(request: Request, renewal_id: RenewalId) -> Response:
    view = await _awaited_renewal(request, renewal_id)
    if not _awaits_password(view):
        return RedirectResponse(status_path(renewal_id), status_code=303)
    return _verify_page(request, view)


@router.post("/renewals/{renewal_id}/verify", include_in_schema=False)
async def verify(request: Request, renewal_id: RenewalId) -> Response:
    """The payer's payment password or 3-D Secure code, passed to the gateway (never kept)."""
    services = services_of(request)
    view = await _awaited_renewal(request, renewal_id)
    if not _awaits_password(view):  # answered already (a second press): its status
        return RedirectResponse(status_path(renewal_id), status_code=303)
    form = await request.form()
    answer = _text(form, "answer", ANSWER_LENGTH_MAX)
    locale = renderer_of(request).page(request).locale
    limit = services.limits.rates.confirm_per_minute_max
    try:
        caller = await signed_in(request) or ANONYMOUS
        await check_caller_rate(request, caller, "confirm", limit=limit, window_s=MINUTE_S)
        await check_rate(
            services, "confirm", f"renewal:{renewal_id}", limit=limit, window_s=MINUTE_S
        )
        confirmed = await confirm_payment(services, renewal_id, answer)
    except TopupError as error:
        if error.code == "renewal_not_awaiting_confirmation":
            return RedirectResponse(status_path(renewal_id), status_code=303)
        errors = form_errors(error, locale, fields={"answer": "answer", error.code: "answer"})
        locked = error.code == "payment_method_locked"
        return _verify_page(
            request,
            view,
            errors=errors,
            declined=error if locked else None,
            status_code=status_of(error),
        )
    if confirmed.status == "declined":
        code = confirmed.renewal.decline_code or "payment_declined"
        declined = PaymentError(f"the payment was declined ({code})", code=code)
        return _verify_page(
            request,
            confirmed,
            errors=form_errors(declined, locale),
            declined=declined,
            status_code=402,
        )
    return RedirectResponse(status_path(renewal_id), status_code=303)
