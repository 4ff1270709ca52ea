"""Who may see a renewal's pages: as the API decides (``GET /api/v1/renewals/{id}``) — the
holder of its client secret, the owner of its card (a signed-in account), or nobody. Anyone
else gets the page of a renewal that does not exist.

The browser that made a renewal holds its client secret in an HttpOnly cookie for that
renewal's pages only (``topup_renewal``, ``Path=/renewals/<id>``), set by the checkout
(``renewal_payment``) as it sends the payer to the status page. A secret never travels in an
address, so another device (the phone that scanned a wallet's QR code) does not see the status
page unless its account owns the card."""

from __future__ import annotations

from starlette.requests import Request

from topup.domain.callers import ANONYMOUS, Caller
from topup.entrypoints.web.shared.sessions import signed_in
from topup.services.access import SECRET_SEPARATOR
from topup.services.context import Services
from topup.services.renewal_status import RenewalStatusView, renewal_status

RENEWAL_COOKIE = "topup_renewal"  # the checkout's: one per renewal, Path=/renewals/<id>
RENEWAL_ID_LENGTH_MAX = 36
CLIENT_SECRET_LENGTH_MAX = 200


def services_of(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


def client_secret_for(request: Request, renewal_id: str) -> str | None:
    """The renewal's client secret if this browser holds it (the cookie of its pages)."""
    found = request.cookies.get(RENEWAL_COOKIE, "")
    if len(found) > CLIENT_SECRET_LENGTH_MAX or not found.startswith(renewal_id + SECRET_SEPARATOR):
        return None
    return found


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
