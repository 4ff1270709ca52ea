"""POST /api/v1/card-number-recovery (R8): the numbers of the cards registered with an e-mail
address are sent to that address. The answer is the same 202 whether or not it is registered;
the look-up and the e-mail happen in the background."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from topup.domain.accounts import EMAIL_LENGTH_MAX
from topup.entrypoints.api.dependencies import (
    CallerDependency,
    LanguageDependency,
    ServicesDependency,
    check_caller_rate,
    check_rate,
)
from topup.entrypoints.api.schemas import problems
from topup.i18n import language_tag, translations
from topup.services import recovery
from topup.services.receipts import parse_email

router = APIRouter()


class RecoveryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=EMAIL_LENGTH_MAX)


class RecoveryAccepted(BaseModel):
    status: str
    message: str


@router.post(
    "/api/v1/card-number-recovery",
    status_code=202,
    response_model=RecoveryAccepted,
    tags=["cards"],
    responses=problems(),
)
async def recover_card_numbers(
    request: Request,
    body: RecoveryRequest,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
) -> Any:
    """Send the numbers (middle digits hidden) of the cards registered with ``email`` to it.
    Always 202 with the same body: the answer does not say whether the address is registered.
    Limited per client address and per e-mail address (429 with Retry-After)."""
    address = parse_email(body.email)
    limit = services.limits.rates.recovery_per_hour_max
    window_s = recovery.RECOVERY_WINDOW_S
    await check_caller_rate(request, caller, "recovery", limit=limit, window_s=window_s)
    await check_rate(
        services, "recovery", recovery.rate_key(services, address), limit=limit, window_s=window_s
    )
    recovery.request_card_numbers(services, address, language)
    return JSONResponse(
        {"status": "accepted", "message": _accepted(language)},
        status_code=202,
        headers={"Content-Language": language_tag(language), "Cache-Control": "no-store"},
    )


def _accepted(language: str) -> str:
    return translations(language).gettext(
        "If this e-mail address is registered with us, we are sending it the numbers of its cards."
    )
