"""Accounts: sign-up, sign-in (bearer tokens), sign-out, and the cards an account links by a
one-time code sent by SMS to the card's number."""

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
    client_address,
)
from topup.entrypoints.api.schemas import CardOut, Read, Write, problems
from topup.entrypoints.http.problems import encode
from topup.entrypoints.views_json import card_json
from topup.services import accounts
from topup.services.views import iso

router = APIRouter(tags=["accounts"])

RATE_WINDOW_S = 60  # the minute of Limits.login_per_minute_max
EMAIL_LENGTH_MAX = 320
LANGUAGE_LENGTH_MAX = 16
CARD_NUMBER_LENGTH_MAX = 40
LINK_CODE_LENGTH_MAX = 16


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


@router.post(
    "/api/v1/accounts",
    status_code=201,
    response_model=AccountOut,
    responses=problems(400, 401, 409),
)
async def sign_up(
    body: SignUpIn,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
) -> Response:
    """Open an account with an e-mail address and a password (10 to 256 characters)."""
    await check_caller_rate(
        request,
        caller,
        "sign_up",
        limit=services.limits.rates.login_per_minute_max,
        window_s=RATE_WINDOW_S,
    )
    account = await accounts.sign_up(
        services, email=body.email, password=body.password, language=body.language or language
    )
    return _json(_account_out(account), status_code=201)


@router.post("/api/v1/auth/token", response_model=AccessTokenOut, responses=problems(400, 401))
async def log_in(
    body: LogInIn, request: Request, services: ServicesDependency, caller: CallerDependency
) -> Response:
    """Sign in: a bearer token, shown once, valid until ``expires_at`` or sign-out. A wrong
    e-mail and a wrong password get the same answer; repeated failures slow answers down, then
    lock the e-mail from this client address for a while (429 ``login_locked`` with
    Retry-After)."""
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
    await check_caller_rate(
        request,
        caller,
        "sms_code",
        limit=services.limits.rates.sms_codes_per_hour_max,
        window_s=accounts.SMS_CODES_WINDOW_S,
    )
    await check_card_lookup(request, caller, body.card_number)
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
