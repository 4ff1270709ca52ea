"""Gateways' webhooks, and the sandbox PSP's tokenisation endpoint (a real PSP serves its own:
card numbers never pass through topup's API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from topup.domain.errors import NotFoundError
from topup.entrypoints.api.dependencies import ServicesDependency
from topup.entrypoints.api.schemas import CardIn, TokenOut, WebhookOut, problems
from topup.entrypoints.http.problems import encode
from topup.ports import PaymentCardDetails
from topup.services.wallets import handle_webhook

router = APIRouter()
WEBHOOK_HEADERS_MAX = 50


@router.post(
    "/api/v1/webhooks/{gateway}",
    response_model=WebhookOut,
    responses=problems(404),
    tags=["webhooks"],
)
async def webhook(
    gateway: Annotated[str, Path(min_length=1, max_length=32)],
    request: Request,
    services: ServicesDependency,
) -> Response:
    """A payment event from a gateway, signed over the raw body (the gateway's own scheme).
    A repeat of an event already handled is answered ``duplicate`` and changes nothing."""
    body = await request.body()
    headers = {
        key.lower(): value for key, value in list(request.headers.items())[:WEBHOOK_HEADERS_MAX]
    }
    outcome = await handle_webhook(services, gateway, body, headers)
    return Response(encode({"outcome": outcome}), media_type="application/json")


@router.post(
    "/sandbox/psp/v1/tokens",
    status_code=201,
    response_model=TokenOut,
    responses=problems(404),
    tags=["sandbox"],
)
async def sandbox_token(card: CardIn, services: ServicesDependency) -> Response:
    """The sandbox gateway's tokenisation endpoint, as a payer's device would call a PSP's.
    Only while the card gateway is the sandbox."""
    if not services.gateway.name.startswith("sandbox"):
        raise NotFoundError("no sandbox gateway here", code="not_found")
    payment_token = await services.gateway.tokenize(
        PaymentCardDetails(
            number=card.number, expiry_month=card.exp_month, expiry_year=card.exp_year, cvc=card.cvc
        )
    )
    data = {
        "token": payment_token.token,
        "brand": payment_token.brand,
        "funding": payment_token.funding,
        "last4": payment_token.last4,
        "exp_month": payment_token.expiry_month,
        "exp_year": payment_token.expiry_year,
    }
    return Response(encode(data), status_code=201, media_type="application/json")
