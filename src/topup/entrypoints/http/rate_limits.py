"""Rate limits of HTTP requests: per client address and, for a known caller, per account or key."""

from __future__ import annotations

from starlette.requests import Request

from topup.domain.callers import ANONYMOUS, Caller
from topup.domain.card_number import parse_card_number
from topup.domain.errors import TopupError
from topup.entrypoints.http.client import client_address
from topup.services.accounts import SMS_CODES_WINDOW_S
from topup.services.context import Services

CARD_LOOKUP = "card_lookup"  # the one rule of every route that resolves a card number
CARD_LOOKUP_WINDOW_S = 60  # the minute of Limits.card_lookup_per_minute_max


async def check_rate(services: Services, name: str, key: str, *, limit: int, window_s: int) -> None:
    """Count one request of ``key`` against rule ``name``; 429 with Retry-After when over."""
    retry_after_s = await services.rate_limiter.hit(name, key, limit=limit, window_s=window_s)
    if retry_after_s:
        raise TopupError(
            f"too many requests ({name}); try again in {retry_after_s} s",
            code="rate_limited",
            retryable=True,
            params={"retry_after_s": str(retry_after_s)},
        )


async def check_caller_rate(
    request: Request, caller: Caller, name: str, *, limit: int, window_s: int
) -> None:
    """The rule counted per client address and, for a known caller, per account or key."""
    services: Services = request.app.state.application.services
    await check_rate(
        services, name, f"ip:{client_address(request)}", limit=limit, window_s=window_s
    )
    if caller.scope != ANONYMOUS.scope:
        await check_rate(services, name, caller.scope, limit=limit, window_s=window_s)


async def check_card_lookup(request: Request, caller: Caller, card_number: str) -> None:
    """One look-up of a card by its number, on any route that resolves one (they share the rule
    ``card_lookup`` and ``Limits.card_lookup_per_minute_max``): counted per client (address,
    and account or key) and per card, by its canonical number (``0123456789`` and
    ``+60123456789`` are one card), so that no route tells unlimited strangers which numbers are
    customers. The number is counted under a keyed hash, never in clear."""
    services: Services = request.app.state.application.services
    limit = services.limits.rates.card_lookup_per_minute_max
    await check_caller_rate(
        request, caller, CARD_LOOKUP, limit=limit, window_s=CARD_LOOKUP_WINDOW_S
    )
    try:
        number = parse_card_number(card_number, services.profile)
    except TopupError:  # not a card number: the route says why; the client was counted
        return
    card_key = "card:" + services.tokens.fingerprint(f"card-lookup:{number.kind}:{number.value}")
    await check_rate(services, CARD_LOOKUP, card_key, limit=limit, window_s=CARD_LOOKUP_WINDOW_S)


SMS_CODE = "sms_code"  # the rule of every route that texts a code to a card's number


async def check_sms_code_request(request: Request, caller: Caller, card_number: str) -> None:
    """A request that texts a code to a card (linking it to an account, adding it to a fleet):
    codes per client an hour (``Limits.sms_codes_per_hour_max``), then the card look-up."""
    services: Services = request.app.state.application.services
    await check_caller_rate(
        request,
        caller,
        SMS_CODE,
        limit=services.limits.rates.sms_codes_per_hour_max,
        window_s=SMS_CODES_WINDOW_S,
    )
    await check_card_lookup(request, caller, card_number)
