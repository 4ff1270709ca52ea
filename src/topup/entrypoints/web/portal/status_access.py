"""Who may see a renewal's pages: as the API decides (``GET /api/v1/renewals/{id}``) — the
holder of its client secret, the owner of its card (a signed-in account), or nobody. Anyone
else gets the page of a renewal that does not exist.

The browser that made a renewal holds its client secret in an HttpOnly cookie scoped to
``/renewals`` (``topup_renewals``: the latest ``RENEWALS_REMEMBERED_MAX`` of them), set by the
checkout with ``remember_renewal`` as it sends the payer to the status page. A secret never
travels in an address, so another device (the phone that scanned a wallet's QR code) does not
see the status page unless its account owns the card."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from topup.domain.callers import ANONYMOUS, Caller
from topup.entrypoints.web.shared.sessions import SessionCookies, signed_in
from topup.services.access import SECRET_SEPARATOR
from topup.services.context import Services
from topup.services.renewal_status import RenewalStatusView, renewal_status

RENEWALS_COOKIE = "topup_renewals"
RENEWALS_COOKIE_PATH = "/renewals"
RENEWALS_COOKIE_MAX_AGE_S = 30 * 24 * 3600
RENEWALS_REMEMBERED_MAX = 10
RENEWAL_ID_LENGTH_MAX = 36
CLIENT_SECRET_LENGTH_MAX = 200
_SEPARATOR = "."  # between secrets in the cookie (never in one: an id, "_secret_", hex)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


def remembered_secrets(request: Request) -> list[str]:
    """The client secrets this browser holds, oldest first (a malformed one is left out)."""
    value = request.cookies.get(RENEWALS_COOKIE, "")
    parts = value.split(_SEPARATOR)[:RENEWALS_REMEMBERED_MAX]
    return [
        part
        for part in parts
        if SECRET_SEPARATOR in part and len(part) <= CLIENT_SECRET_LENGTH_MAX and part.isascii()
    ]


def remember_renewal(request: Request, response: Response, client_secret: str) -> None:
    """Let this browser see the renewal whose client secret this is (the checkout calls it on
    the answer that sends the payer to ``/renewals/{id}``)."""
    kept = [secret for secret in remembered_secrets(request) if secret != client_secret]
    kept = [*kept, client_secret][-RENEWALS_REMEMBERED_MAX:]
    cookies: SessionCookies = request.app.state.session_cookies
    response.set_cookie(
        RENEWALS_COOKIE,
        _SEPARATOR.join(kept),
        max_age=RENEWALS_COOKIE_MAX_AGE_S,
        path=RENEWALS_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=cookies.secure,
    )


def client_secret_for(request: Request, renewal_id: str) -> str | None:
    prefix = renewal_id + SECRET_SEPARATOR
    return next(
        (secret for secret in remembered_secrets(request) if secret.startswith(prefix)), None
    )


async def caller_of(request: Request) -> Caller:
    return await signed_in(request) or ANONYMOUS


async def visible_status(request: Request, renewal_id: str) -> RenewalStatusView:
    """The renewal's status if this browser may see it; else ``renewal_unknown`` (404)."""
    renewal_id = renewal_id[:RENEWAL_ID_LENGTH_MAX]
    return await renewal_status(
        services_of(request),
        await caller_of(request),
        renewal_id,
        client_secret_for(request, renewal_id),
    )
