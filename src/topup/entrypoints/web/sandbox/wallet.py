"""The sandbox e-wallet's approval page: the payer approves or refuses a payment in the wallet (on a phone, or by scanning a QR code).

As a real wallet's page would be on the provider's site, this one is served here for the demo
and the tests, backed by the sandbox wallet (``services.wallets.wallet_approval`` and
``answer_in_wallet``): its address names the payment by a reference the wallet signed, and an
answer makes the wallet send its webhook at once. Opened from the shop's page on the same phone
(with ``return_to``), it sends the payer back there; opened by scanning a QR code, it says to go
back to the other screen, which moves on by itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import InputError
from topup.entrypoints.web.shared.language import local_path
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.ports import WalletApproval
from topup.services.context import Services
from topup.services.wallets import answer_in_wallet, wallet_approval

router = APIRouter()

Reference = Annotated[str, Path(min_length=1, max_length=400)]
ReturnTo = Annotated[str, Query(max_length=200)]
NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}
ANSWERS = {"approve": True, "refuse": False}


def _services(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


def _page(
    request: Request, approval: WalletApproval, return_to: str, *, status_code: int = 200
) -> Response:
    return renderer_of(request).render(
        request,
        "sandbox/wallet/approve.html",
        {"approval": approval, "return_to": local_path(return_to, default="")},
        status_code=status_code,
        headers=NO_STORE,
    )


@router.get("/sandbox/wallet/{reference}", include_in_schema=False)
async def approval_page(
    request: Request, reference: Reference, return_to: ReturnTo = ""
) -> Response:
    approval = wallet_approval(_services(request), reference)
    return _page(request, approval, return_to)


@router.post("/sandbox/wallet/{reference}", include_in_schema=False)
async def answer(
    request: Request,
    reference: Reference,
    decision: Annotated[str, Form(max_length=10)] = "",
    return_to: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The payer's answer; then back to the shop (``return_to``) or the answer shown here."""
    if decision not in ANSWERS:
        raise InputError("approve or refuse", code="invalid_request", field="decision")
    approval = await answer_in_wallet(_services(request), reference, approve=ANSWERS[decision])
    back = local_path(return_to, default="")
    if back:
        return RedirectResponse(back, status_code=303)
    return _page(request, approval, "")
