"""What every route may ask for: the services, the caller, the caller's language, a rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from topup.bootstrap import Application
from topup.domain.callers import ANONYMOUS, Caller
from topup.domain.errors import TopupError
from topup.entrypoints.http.client import client_address
from topup.entrypoints.http.language import request_language
from topup.entrypoints.http.rate_limits import (
    check_caller_rate,
    check_card_lookup,
    check_rate,
    check_sms_code_request,
)
from topup.services import accounts, api_keys
from topup.services.context import Services

API_KEY_HEADER = "x-api-key"
BEARER = "bearer "


def application_of(request: Request) -> Application:
    application: Application = request.app.state.application
    return application


async def services_of(request: Request) -> Services:
    # Dependencies are coroutines: FastAPI runs a plain function in a thread pool, a thread hop
    # per request that costs more than the function.
    return application_of(request).services


async def language_of_request(request: Request) -> str:
    return request_language(request)


async def caller_of(request: Request) -> Caller:
    """An API key (``X-API-Key``), else a bearer token of an account, else anonymous. A credential
    that is given but wrong is refused (401), never taken as anonymous."""
    services = application_of(request).services
    presented_key = request.headers.get(API_KEY_HEADER)
    if presented_key is not None:
        return await api_keys.authenticate_api_key(services, presented_key)
    authorization = request.headers.get("authorization")
    if authorization is not None:
        if not authorization.lower().startswith(BEARER):
            raise TopupError(
                "use 'Authorization: Bearer <token>' or the X-API-Key header",
                code="token_invalid",
            )
        return await accounts.authenticate_token(services, authorization[len(BEARER) :].strip())
    return ANONYMOUS


ServicesDependency = Annotated[Services, Depends(services_of)]
CallerDependency = Annotated[Caller, Depends(caller_of)]
LanguageDependency = Annotated[str, Depends(language_of_request)]

__all__ = [  # the shared HTTP layer's, re-exported for the API's routes
    "CallerDependency",
    "LanguageDependency",
    "ServicesDependency",
    "application_of",
    "caller_of",
    "check_caller_rate",
    "check_card_lookup",
    "check_rate",
    "check_sms_code_request",
    "client_address",
    "services_of",
]
