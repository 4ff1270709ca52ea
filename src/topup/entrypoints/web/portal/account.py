"""A subscriber's account, the pages anyone may open: sign up, confirm the e-mail address, sign
in, sign out, forgot password and set a new one (R5). The signed-in pages (cards, history,
receipts, saved payment cards) are in ``account_pages``, mounted behind ``require_account``.

E-mailed links carry a token in their query. The page that receives one takes it out of the URL
at once: the token goes into a short-lived HttpOnly cookie scoped to ``/accounts`` and the
browser is sent to the same page without it; that page shows a form that posts the token (so a
mail scanner that fetches the link spends nothing). Answers about an address never say whether
it has an account. The rate limits are the API's."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.accounts import PASSWORD_LENGTH_MAX
from topup.domain.callers import ANONYMOUS
from topup.domain.errors import TopupError
from topup.entrypoints.http.client import client_address
from topup.entrypoints.http.rate_limits import check_caller_rate, check_rate
from topup.entrypoints.web.portal import (
    account_cards,
    account_history,
    account_payment_cards,
    auto_renewal_page,
    card_timeline_page,
    fleet,
    fleet_bulk,
    fleet_policy,
)
from topup.entrypoints.web.portal.account_common import (
    locale_of,
    render,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors, form_errors
from topup.entrypoints.web.shared.language import local_path
from topup.entrypoints.web.shared.sessions import (
    SessionCookies,
    drop_session_cookie,
    end_session,
    require_account,
    session_token,
    signed_in,
    start_session,
)
from topup.services import account_emails, web_sessions
from topup.services.receipts import parse_email

router = APIRouter()
# The signed-in pages: protected by where they are mounted.
signed_in_pages = APIRouter(dependencies=[Depends(require_account)])
signed_in_pages.include_router(account_cards.router)
signed_in_pages.include_router(account_history.router)
signed_in_pages.include_router(account_payment_cards.router)
signed_in_pages.include_router(auto_renewal_page.router)  # issue 11: auto-renewal
signed_in_pages.include_router(fleet.router)  # issue 11: enterprise fleets
signed_in_pages.include_router(fleet_bulk.router)
signed_in_pages.include_router(fleet_policy.router)
signed_in_pages.include_router(card_timeline_page.router)  # issue 11: a card's timeline

HOME = "/accounts/cards"  # where a signed-in visitor lands
RATE_WINDOW_S = 60  # the minute of Limits.login_per_minute_max
EMAIL_LENGTH_MAX = 320
TOKEN_LENGTH_MAX = account_emails.EMAIL_TOKEN_LENGTH_MAX
LINK_COOKIE = "topup_email_link"  # the token of the e-mailed link being followed
LINK_COOKIE_MAX_AGE_S = 1800
LINK_COOKIE_PATH = "/accounts"
CONFIRM_PATH = account_emails.CONFIRM_PAGE
RESET_PATH = account_emails.PASSWORD_RESET_PAGE
NEW_PASSWORD_PATH = RESET_PATH + "/new"
EMAIL_FIELDS = {"email": "email", "password": "password", "token": "token"}


_services = services_of
_render = render
_locale = locale_of
_status = status_for


def _errors(request: Request, error: TopupError) -> FormErrors:
    return form_errors(error, _locale(request), fields=EMAIL_FIELDS)


async def _check_client_rate(request: Request, name: str, *, limit: int, window_s: int) -> None:
    caller = await signed_in(request) or ANONYMOUS
    await check_caller_rate(request, caller, name, limit=limit, window_s=window_s)


async def _check_email_rate(request: Request, name: str, address: str) -> None:
    services = _services(request)
    await check_rate(
        services,
        name,
        account_emails.rate_key(services, name, address),
        limit=services.limits.rates.recovery_per_hour_max,
        window_s=account_emails.EMAIL_WINDOW_S,
    )


# --- sign up, confirm ------------------------------------------------------------------------


@router.get("/accounts/sign-up")
async def sign_up_page(request: Request) -> Response:
    return _render(request, "sign_up.html", {"errors": NO_ERRORS, "email": ""})


@router.post("/accounts/sign-up")
async def sign_up(request: Request) -> Response:
    form = await request.form()
    email = text_field(form, "email", EMAIL_LENGTH_MAX)
    password = text_field(form, "password", PASSWORD_LENGTH_MAX + 1)
    services = _services(request)
    locale = _locale(request)
    try:
        address = parse_email(email)
        await _check_client_rate(
            request,
            "sign_up",
            limit=services.limits.rates.login_per_minute_max,
            window_s=RATE_WINDOW_S,
        )
        await _check_email_rate(request, "sign_up", address)
        await account_emails.sign_up(
            services, email=address, password=password, language=locale, locale=locale
        )
    except TopupError as error:
        context = {"errors": _errors(request, error), "email": email}
        return _render(request, "sign_up.html", context, _status(error))
    return _render(request, "check_email.html", {"purpose": "sign_up"}, 202)


def _take_token(request: Request, path: str) -> Response | None:
    """A link's token in the URL: kept in the link cookie, and the browser sent to ``path``
    without it. None if the URL has no token."""
    token = request.query_params.get("token")
    if token is None:
        return None
    cookies: SessionCookies = request.app.state.session_cookies
    response = RedirectResponse(path, status_code=303)
    response.headers["cache-control"] = "no-store"
    response.set_cookie(
        LINK_COOKIE,
        token[:TOKEN_LENGTH_MAX],
        max_age=LINK_COOKIE_MAX_AGE_S,
        path=LINK_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=cookies.secure,
    )
    return response


def _forget_token(request: Request, response: Response) -> Response:
    cookies: SessionCookies = request.app.state.session_cookies
    response.delete_cookie(
        LINK_COOKIE, path=LINK_COOKIE_PATH, httponly=True, samesite="lax", secure=cookies.secure
    )
    return response


def _link_token(request: Request) -> str:
    return request.cookies.get(LINK_COOKIE, "")[:TOKEN_LENGTH_MAX]


@router.get(CONFIRM_PATH)
async def confirm_page(request: Request) -> Response:
    taken = _take_token(request, CONFIRM_PATH)
    if taken is not None:
        return taken
    return _render(request, "confirm.html", {"errors": NO_ERRORS, "token": _link_token(request)})


@router.post(CONFIRM_PATH)
async def confirm(request: Request) -> Response:
    form = await request.form()
    token = text_field(form, "token", TOKEN_LENGTH_MAX)
    services = _services(request)
    try:
        await _check_client_rate(
            request,
            "email_link",
            limit=services.limits.rates.login_per_minute_max,
            window_s=RATE_WINDOW_S,
        )
        await account_emails.confirm_email(services, token)
    except TopupError as error:
        context = {"errors": _errors(request, error), "token": ""}
        return _forget_token(request, _render(request, "confirm.html", context, _status(error)))
    return _forget_token(request, _to_sign_in("confirmed"))


# --- sign in, sign out -----------------------------------------------------------------------


NOTICES = frozenset(
    {"confirmed", "password_set", "signed_out", "session_ended"}
)  # shown on the sign-in page


def _to_sign_in(notice: str) -> Response:
    response = RedirectResponse(
        account_emails.SIGN_IN_PAGE + "?" + urlencode({"notice": notice}), status_code=303
    )
    response.headers["cache-control"] = "no-store"
    return response


@router.get(account_emails.SIGN_IN_PAGE)
async def sign_in_page(request: Request, next: str = HOME, notice: str = "") -> Response:
    """A browser whose session ended (idle, too old, signed out elsewhere) is told so, and its
    cookie is dropped."""
    ended = bool(session_token(request)) and await signed_in(request) is None
    shown = "session_ended" if ended and not notice else notice
    context = {
        "errors": NO_ERRORS,
        "email": "",
        "next": local_path(next, HOME),
        "notice": shown if shown in NOTICES else None,
    }
    response = _render(request, "sign_in.html", context)
    if ended:
        drop_session_cookie(request, response)
    return response


@router.post(account_emails.SIGN_IN_PAGE)
async def sign_in(request: Request) -> Response:
    form = await request.form()
    email = text_field(form, "email", EMAIL_LENGTH_MAX)
    password = text_field(form, "password", PASSWORD_LENGTH_MAX + 1)
    next_path = local_path(text_field(form, "next", 2000), HOME)
    services = _services(request)
    try:
        await check_caller_rate(
            request,
            ANONYMOUS,
            "login",
            limit=services.limits.rates.login_per_minute_max,
            window_s=RATE_WINDOW_S,
        )
        issued = await web_sessions.sign_in(
            services,
            email=email,
            password=password,
            client_address=client_address(request),
            replacing=session_token(request),
        )
    except TopupError as error:
        errors = form_errors(error, _locale(request), fields={"login_failed": "email"})
        context = {"errors": errors, "email": email, "next": next_path, "notice": None}
        response = _render(request, "sign_in.html", context, _status(error))
        retry_after = error.params.get("retry_after_s")
        if retry_after:
            response.headers["retry-after"] = retry_after
        return response
    response = RedirectResponse(next_path, status_code=303)
    start_session(request, response, issued.access_token, max_age_s=issued.expires_in_s)
    return response


@router.get("/accounts/sign-out")
async def sign_out_page(request: Request) -> Response:
    return _render(request, "sign_out.html")


@router.post("/accounts/sign-out")
async def sign_out(request: Request) -> Response:
    response = _to_sign_in("signed_out")
    await end_session(request, response)
    return response


# --- forgot password, new password -----------------------------------------------------------


@router.get(RESET_PATH)
async def forgot_password_page(request: Request) -> Response:
    taken = _take_token(request, NEW_PASSWORD_PATH)
    if taken is not None:
        return taken
    return _render(request, "forgot_password.html", {"errors": NO_ERRORS, "email": ""})


@router.post(RESET_PATH)
async def forgot_password(request: Request) -> Response:
    form = await request.form()
    email = text_field(form, "email", EMAIL_LENGTH_MAX)
    services = _services(request)
    try:
        address = parse_email(email)
        limit = services.limits.rates.recovery_per_hour_max
        await _check_client_rate(
            request, "password_reset", limit=limit, window_s=account_emails.EMAIL_WINDOW_S
        )
        await _check_email_rate(request, "password_reset", address)
        account_emails.request_password_reset(services, address, _locale(request))
    except TopupError as error:
        context = {"errors": _errors(request, error), "email": email}
        return _render(request, "forgot_password.html", context, _status(error))
    return _render(request, "check_email.html", {"purpose": "password_reset"}, 202)


@router.get(NEW_PASSWORD_PATH)
async def new_password_page(request: Request) -> Response:
    context = {"errors": NO_ERRORS, "token": _link_token(request)}
    return _render(request, "new_password.html", context)


@router.post(NEW_PASSWORD_PATH)
async def new_password(request: Request) -> Response:
    form = await request.form()
    token = text_field(form, "token", TOKEN_LENGTH_MAX)
    password = text_field(form, "password", PASSWORD_LENGTH_MAX + 1)
    services = _services(request)
    try:
        await _check_client_rate(
            request,
            "email_link",
            limit=services.limits.rates.login_per_minute_max,
            window_s=RATE_WINDOW_S,
        )
        await account_emails.reset_password(services, token=token, password=password)
    except TopupError as error:
        kept = "" if error.code == "reset_token_invalid" else token
        context = {"errors": _errors(request, error), "token": kept}
        return _render(request, "new_password.html", context, _status(error))
    response = _to_sign_in("password_set")
    await end_session(request, response)  # the reset signed every session of the account out
    return _forget_token(request, response)


router.include_router(signed_in_pages)
