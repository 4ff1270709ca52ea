"""Rate limits of HTTP requests: per client address and, for a known caller, per account or key."""

from __future__ import annotations

from starlette.requests import Request

from topup.domain.callers import ANONYMOUS, Caller
from topup.domain.errors import TopupError
from topup.entrypoints.http.client import client_address
from topup.services.context import Services


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
