"""Accounts: sign-up and password reset finished by links e-mailed to the address (the answers
never say whether an address has an account), sign-in (bearer tokens), sign-out, and the cards
an account links by a one-time code sent by SMS to the card's number."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.responses import Response

from topup.domain.accounts import PASSWORD_LENGTH_MAX, Account
from topup.domain.callers import Caller, CallerKind
from topup.domain.errors import TopupError
from topup.entrypoints.api.dependencies import (
    BEARER,
    CallerDependency,
    LanguageDependency,
    ServicesDependency,
    check_caller_rate,
    check_card_lookup,
    check_rate,
    check_sms_code_request,
    client_address,
)
from topup.entrypoints.api.schemas import CardOut, Read, Write, problems
from topup.entrypoints.http.problems import encode
from topup.entrypoints.views_json import card_json
from topup.i18n import N_, language_tag, translations
from topup.services import account_emails, accounts
from topup.services.context import Services
from topup.services.receipts import parse_email
from topup.services.views import iso

router = APIRouter(tags=["accounts"])

RATE_WINDOW_S = 60  # the minute of Limits.login_per_minute_max
EMAIL_LENGTH_MAX = 320
LANGUAGE_LENGTH_MAX = 16
CARD_NUMBER_LENGTH_MAX = 40
LINK_CODE_LENGTH_MAX = 16
EMAIL_TOKEN_LENGTH_MAX = account_emails.EMAIL_TOKEN_LENGTH_MAX


class SignUpIn(Write):
    email: str = Field(min_length=1, max_length=EMAIL_LENGTH_MAX)
    password: str = Field(
        min_length=1, max_length=PASSWORD_LENGTH_MAX, description="10 to 256 characters"
    )
    language: str | None = Field(
        None,
        min_length=1,
        max_length=LANGUAGE_LENGTH_MAX,
        description="en, zh_Hans, ms or id; default: the request's Accept-Language",
    )


class EmailIn(Write):
    email: str = Field(min_length=1, max_length=EMAIL_LENGTH_MAX)


class EmailTokenIn(Write):
    token: str = Field(
        min_length=1, max_length=EMAIL_TOKEN_LENGTH_MAX, description="From the e-mailed link"
    )


class PasswordResetIn(EmailTokenIn):
    password: str = Field(
        min_length=1, max_length=PASSWORD_LENGTH_MAX, description="10 to 256 characters"
    )


class AcceptedOut(Read):
    status: Literal["accepted"]
    message: str = Field(description="What happens next, in the request's language")


class LogInIn(Write):
    email: str = Field(min_length=1, max_length=EMAIL_LENGTH_MAX)
    password: str = Field(min_length=1, max_length=PASSWORD_LENGTH_MAX)


class CardNumberIn(Write):
    card_number: str = Field(
        min_length=1, max_length=CARD_NUMBER_LENGTH_MAX, description="MSISDN or ICCID"
    )


class LinkCodeIn(CardNumberIn):
    code: str = Field(
        min_length=1, max_length=LINK_CODE_LENGTH_MAX, description="The 6 digits sent by SMS"
    )


class AccountOut(Read):
    id: str
    email: str
    language: str


class AccessTokenOut(Read):
    access_token: str = Field(description="Shown once; send as 'Authorization: Bearer <token>'")
    token_type: Literal["bearer"]
    expires_at: str
    expires_in: int = Field(description="Seconds until the token expires")


class LinkCodeSentOut(Read):
    card_number: str = Field(description="The card's number, masked: where the code went")
    expires_at: str


class LinkedCardsOut(Read):
    cards: list[CardOut]


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(encode(data), status_code=status_code, media_type="application/json")


def _signed_in(caller: Caller) -> str:
    """The caller's account; 401 ``authentication_required`` for anybody else."""
    if caller.kind is not CallerKind.ACCOUNT or caller.account_id is None:
        raise TopupError(
            "sign in to an account and send its bearer token",
            code="authentication_required",
            params={},
        )
    return caller.account_id


def _account_out(account: Account) -> dict[str, Any]:
    return {"id": account.id, "email": account.email, "language": account.language}


SIGN_UP_ACCEPTED = N_(
    "We have sent a message to this e-mail address. Follow it to finish signing up."
)
PASSWORD_RESET_ACCEPTED = N_(
    "If an account has this e-mail address, we are sending it a link to set a new password."
)


def _accepted(text: str, language: str) -> Response:
    """202 with the same body whether or not the address has an account."""
    body = {"status": "accepted", "message": translations(language).gettext(text)}
    return Response(
        encode(body),
        status_code=202,
        media_type="application/json",
        headers={"Content-Language": language_tag(language), "Cache-Control": "no-store"},
    )


async def _check_email_rate(services: Services, name: str, address: str) -> None:
    """Requests that mail one address, from any client: nobody can flood a mailbox."""
    await check_rate(
        services,
        name,
        account_emails.rate_key(services, name, address),
        limit=services.limits.rates.recovery_per_hour_max,
        window_s=account_emails.EMAIL_WINDOW_S,
    )


@router.post(
    "/api/v1/accounts",
    status_code=202,
    response_model=AcceptedOut,
    responses=problems(400, 401),
)
async def sign_up(
    body: SignUpIn,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
) -> Response:
    """Sign up with an e-mail address and a password (10 to 256 characters). Always 202 with the
    same body, new address or not: the rest happens by e-mail. A new address gets a link to
    confirm it (valid 24 h; the account signs in once confirmed, with this password); an address
    that has an account is told so, with links to sign in and to reset the password. Limited
    per client address (per minute) and per e-mail address (``TOPUP_RECOVERY_PER_HOUR_MAX``)."""
    address = parse_email(body.email)
    await check_caller_rate(
        request,
        caller,
        "sign_up",
        limit=services.limits.rates.login_per_minute_max,
        window_s=RATE_WINDOW_S,
    )
    await _check_email_rate(services, "sign_up", address)
    await account_emails.sign_up(
        services,
        email=address,
        password=body.password,
        language=body.language or language,
        locale=language,
    )
    return _accepted(SIGN_UP_ACCEPTED, language)


@router.post("/api/v1/accounts/confirm", response_model=AccountOut, responses=problems(400, 401))
async def confirm_email(
    body: EmailTokenIn, request: Request, services: ServicesDependency, caller: CallerDependency
) -> Response:
    """Confirm the e-mail address with the token of the link sent at sign-up; the account may
    sign in from now on. 422 ``confirmation_token_invalid`` if the link expired, was used, or
    the account is confirmed already."""
    await check_caller_rate(
        request,
        caller,
        "email_link",
        limit=services.limits.rates.login_per_minute_max,
        window_s=RATE_WINDOW_S,
    )
    account = await account_emails.confirm_email(services, body.token)
    return _json(_account_out(account))


@router.post(
    "/api/v1/auth/password-reset",
    status_code=202,
    response_model=AcceptedOut,
    responses=problems(400, 401),
)
async def request_password_reset(
    body: EmailIn,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
) -> Response:
    """E-mail a link to set a new password (single use, valid 30 minutes) to the account with
    this address. Always 202 with the same body: the answer does not say whether an account
    has the address. Limited per client address and per e-mail address
    (``TOPUP_RECOVERY_PER_HOUR_MAX``, 429 with Retry-After)."""
    address = parse_email(body.email)
    limit = services.limits.rates.recovery_per_hour_max
    window_s = account_emails.EMAIL_WINDOW_S
    await check_caller_rate(request, caller, "password_reset", limit=limit, window_s=window_s)
    await _check_email_rate(services, "password_reset", address)
    account_emails.request_password_reset(services, address, language)
    return _accepted(PASSWORD_RESET_ACCEPTED, language)


@router.post(
    "/api/v1/auth/password-reset/confirm",
    status_code=204,
    response_class=Response,
    responses=problems(400, 401),
)
async def reset_password(
    body: PasswordResetIn,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
) -> Response:
    """Set a new password with the token of the e-mailed link, once. Every sign-in token of the
    account stops working, and failed sign-ins and locks on its e-mail are forgotten; an
    account not confirmed yet is confirmed. 422 ``reset_token_invalid`` if the link expired or
    was used (ask for a new one)."""
    await check_caller_rate(
        request,
        caller,
        "email_link",
        limit=services.limits.rates.login_per_minute_max,
        window_s=RATE_WINDOW_S,
    )
    await account_emails.reset_password(services, token=body.token, password=body.password)
    return Response(status_code=204)


@router.post("/api/v1/auth/token", response_model=AccessTokenOut, responses=problems(400, 401, 403))
async def log_in(
    body: LogInIn, request: Request, services: ServicesDependency, caller: CallerDependency
) -> Response:
    """Sign in: a bearer token, shown once, valid until ``expires_at`` or sign-out. A wrong
    e-mail and a wrong password get the same answer; repeated failures slow answers down, then
    lock the e-mail from this client address for a while (429 ``login_locked`` with
    Retry-After). An account whose e-mail is not confirmed yet is 403 ``email_not_confirmed``
    once the right password is given."""
    await check_caller_rate(
        request,
        caller,
        "login",
        limit=services.limits.rates.login_per_minute_max,
        window_s=RATE_WINDOW_S,
    )
    issued = await accounts.log_in(
        services,
        email=body.email,
        password=body.password,
        client_address=client_address(request),
    )
    return _json(
        {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_at": iso(issued.expires_at),
            "expires_in": issued.expires_in_s,
        }
    )


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    response_class=Response,
    responses=problems(400, 401),
)
async def log_out(
    request: Request, services: ServicesDependency, caller: CallerDependency
) -> Response:
    """Sign out: the bearer token of this request stops working."""
    _signed_in(caller)
    authorization = request.headers.get("authorization") or ""
    await accounts.log_out(services, authorization[len(BEARER) :].strip())
    return Response(status_code=204)


@router.get("/api/v1/accounts/me", response_model=AccountOut, responses=problems(400, 401))
async def me(services: ServicesDependency, caller: CallerDependency) -> Response:
    """The signed-in account."""
    account = await accounts.account_of(services, _signed_in(caller))
    return _json(_account_out(account))


@router.post(
    "/api/v1/accounts/me/cards",
    status_code=202,
    response_model=LinkCodeSentOut,
    responses=problems(400, 401, 404, 409, 503),
)
async def start_card_link(
    body: CardNumberIn, request: Request, services: ServicesDependency, caller: CallerDependency
) -> Response:
    """Start linking a card: a 6-digit code goes by SMS to the card's number, valid for 10
    minutes and 5 attempts; give it to ``/api/v1/accounts/me/cards/verify``."""
    account_id = _signed_in(caller)
    await check_sms_code_request(request, caller, body.card_number)
    sent = await accounts.start_card_link(services, account_id, body.card_number)
    return _json(
        {"card_number": sent.card_number, "expires_at": iso(sent.expires_at)}, status_code=202
    )


@router.post(
    "/api/v1/accounts/me/cards/verify",
    status_code=201,
    response_model=CardOut,
    responses=problems(400, 401, 404, 409),
)
async def verify_card_link(
    body: LinkCodeIn, request: Request, services: ServicesDependency, caller: CallerDependency
) -> Response:
    """Link the card with the code sent to it; answers the card with its balance."""
    account_id = _signed_in(caller)
    await check_card_lookup(request, caller, body.card_number)
    card = await accounts.verify_card_link(services, account_id, body.card_number, body.code)
    return _json(card_json(card), status_code=201)


@router.get(
    "/api/v1/accounts/me/cards", response_model=LinkedCardsOut, responses=problems(400, 401)
)
async def my_cards(services: ServicesDependency, caller: CallerDependency) -> Response:
    """The account's linked cards with their balances (credit, data, validity, bill due)."""
    cards = await accounts.my_cards(services, _signed_in(caller))
    return _json({"cards": [card_json(card) for card in cards]})
