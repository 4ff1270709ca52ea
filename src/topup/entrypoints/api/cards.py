"""Cards: the plans a card may buy (anyone, rate limited), the methods offered, and, for the
card's owner and staff, its balance and its transactions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from topup.entrypoints.api.dependencies import (
    CallerDependency,
    LanguageDependency,
    ServicesDependency,
    check_card_lookup,
)
from topup.entrypoints.api.schemas import (
    CardOut,
    CardPlansOut,
    Channel,
    MethodsOut,
    TransactionsOut,
    problems,
)
from topup.entrypoints.http.problems import encode
from topup.entrypoints.views_json import (
    card_json,
    card_plans_json,
    methods_json,
    transactions_json,
)
from topup.services import queries
from topup.services.payment_methods import offered_methods

router = APIRouter(tags=["cards"])

CardNumber = Annotated[str, Path(min_length=1, max_length=40, description="MSISDN or ICCID")]


def _json(data: Any) -> Response:
    return Response(encode(data), media_type="application/json")


@router.get(
    "/api/v1/cards/{card_number}/plans", response_model=CardPlansOut, responses=problems(404, 409)
)
async def card_plans(
    card_number: CardNumber,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
    channel: Annotated[Channel | None, Query()] = None,
) -> Response:
    """The card's kind, status and validity end, and the plans it may buy on this channel (the
    caller's own for an API key; web by default). No personal data."""
    await check_card_lookup(request, caller, card_number)
    chosen = caller.channel_for(channel)
    found = await queries.public_plans(services, card_number=card_number, channel=chosen)
    return _json(card_plans_json(found, language))


@router.get("/api/v1/payment-methods", response_model=MethodsOut, responses=problems(404, 409))
async def payment_methods(
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
    card_number: Annotated[str, Query(min_length=1, max_length=40)],
    plan: Annotated[str, Query(min_length=1, max_length=64)],
    channel: Annotated[Channel | None, Query()] = None,
) -> Response:
    """The payment methods offered for this renewal here, with their limits; when there is
    none, ``reason`` says why (R4, R7c, R10)."""
    await check_card_lookup(request, caller, card_number)
    offer = await offered_methods(
        services,
        card_number=card_number,
        plan_code=plan,
        channel=caller.channel_for(channel),
        region=caller.region,
    )
    return _json(methods_json(offer, language))


@router.get(
    "/api/v1/cards/{card_number}/balance", response_model=CardOut, responses=problems(401, 404)
)
async def balance(
    card_number: CardNumber,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
) -> Response:
    """Credit, data left, validity end and status, read now (R5). The card's owner and staff
    only; anyone else gets 404, as for a card that does not exist."""
    await check_card_lookup(request, caller, card_number)
    return _json(card_json(await queries.card_balance(services, caller, card_number)))


@router.get(
    "/api/v1/cards/{card_number}/transactions",
    response_model=TransactionsOut,
    responses=problems(401, 404),
)
async def transactions(
    card_number: CardNumber,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Response:
    """The card's renewals, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""
    await check_card_lookup(request, caller, card_number)
    page = await queries.card_transactions(
        services, caller, card_number, limit=limit, cursor=cursor
    )
    return _json(transactions_json(page))
