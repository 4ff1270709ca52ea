"""Where a renewal stands (live), its receipt on screen, as PDF and by e-mail (R9).

- ``/renewals/{id}``: the status page (timeline, expected activation, when and how to contact
  customer service, the reference to quote). Live with Server-Sent Events
  (``/renewals/{id}/events``, ``status_events``); without JavaScript it reloads itself (a meta
  refresh inside ``<noscript>``) until the renewal is final.
- ``/renewals/{id}/wallet``: the page while an e-wallet approval is pending (a button that opens
  the wallet on a phone, a QR code to scan on a desktop); ``/renewals/{id}/wallet/return`` is
  where the wallet sends the payer back (we then ask the wallet; its webhook may have come first:
  the renewal moves once either way).
- ``/renewals/{id}/receipt`` (``.pdf``), and ``POST /renewals/{id}/receipt/email``: the e-mail
  address travels in the form's body only.

Who may see them: ``status_access``."""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Form, Path, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import PaymentError, TopupError
from topup.domain.renewal import RenewalStatus
from topup.entrypoints.http.problems import error_text
from topup.entrypoints.http.rate_limits import check_caller_rate, check_rate
from topup.entrypoints.web.portal.status_access import (
    RENEWAL_ID_LENGTH_MAX,
    caller_of,
    services_of,
    visible_status,
)
from topup.entrypoints.web.portal.status_events import (
    StatusStream,
    stream_response,
    version_of,
)
from topup.entrypoints.web.shared.forms import form_errors
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.i18n import N_
from topup.services.receipts import receipt_document, receipt_of, receipt_unknown, send_receipt
from topup.services.renewal_status import RenewalStatusView, Waiting
from topup.services.views import ReceiptView
from topup.services.wallets import payer_returned

router = APIRouter()

RenewalId = Annotated[str, Path(min_length=1, max_length=RENEWAL_ID_LENGTH_MAX)]
# How often a page reloads itself without JavaScript: the wallet's waiting page and a payment
# being confirmed change within seconds; an activation within minutes.
REFRESH_S = 5
REFRESH_ACTIVATING_S = 10
RECEIPT_EMAILS_WINDOW_S = 3600
EMAIL_TYPED_LENGTH_MAX = 320
QR_SCALE = 5
PDF_MEDIA_TYPE = "application/pdf"
PRIVATE = {"cache-control": "private, no-store", "referrer-policy": "no-referrer"}
RETURN_PARAMETER = "return_to"  # the sandbox wallet's page sends the payer back there

# The heading of the page for each status.
HEADINGS = {
    RenewalStatus.PENDING_PAYMENT: N_("Waiting for your payment"),
    RenewalStatus.REQUIRES_ACTION: N_("Waiting for you to confirm the payment"),
    RenewalStatus.PAYMENT_PENDING: N_("Waiting for the payment to be confirmed"),
    RenewalStatus.ACTIVATING: N_("Paid: your renewal is being activated"),
    RenewalStatus.COMPLETED: N_("Done: your renewal is active"),
    RenewalStatus.DECLINED: N_("The payment was not taken"),
    RenewalStatus.REFUNDED: N_("Your payment was refunded"),
    RenewalStatus.CANCELLED: N_("This renewal was cancelled"),
}
# What each step of the timeline says (the step's status).
STEPS = {
    RenewalStatus.PENDING_PAYMENT: N_("Renewal created"),
    RenewalStatus.REQUIRES_ACTION: N_("Waiting for your confirmation"),
    RenewalStatus.PAYMENT_PENDING: N_("Payment sent, waiting for its result"),
    RenewalStatus.ACTIVATING: N_("Payment received; sent to the network"),
    RenewalStatus.COMPLETED: N_("Activated on the network"),
    RenewalStatus.DECLINED: N_("Payment declined; nothing was taken"),
    RenewalStatus.REFUNDED: N_("Refunded in full"),
    RenewalStatus.CANCELLED: N_("Cancelled; nothing was taken"),
}


def _decline_text(status: RenewalStatusView, locale: str) -> str | None:
    renewal = status.renewal.renewal
    if renewal.status is not RenewalStatus.DECLINED:
        return None
    code = renewal.decline_code or "payment_declined"
    return error_text(PaymentError("declined", code=code), locale)


def _context(request: Request, status: RenewalStatusView, **more: object) -> dict[str, object]:
    locale = renderer_of(request).page(request).locale
    return {
        "status": status,
        "headings": HEADINGS,
        "steps": STEPS,
        "version": version_of(status),
        "decline_text": _decline_text(status, locale),
        "refresh_s": REFRESH_ACTIVATING_S
        if status.status is RenewalStatus.ACTIVATING
        else REFRESH_S,
        **more,
    }


@router.get("/renewals/{renewal_id}", include_in_schema=False)
async def status_page(request: Request, renewal_id: RenewalId) -> Response:
    status = await visible_status(request, renewal_id)
    if status.waiting is Waiting.WALLET:
        return RedirectResponse(f"/renewals/{status.id}/wallet", status_code=303)
    return renderer_of(request).render(
        request, "portal/status/status.html", _context(request, status), headers=PRIVATE
    )


@router.get("/renewals/{renewal_id}/events", include_in_schema=False)
async def status_events(
    request: Request,
    renewal_id: RenewalId,
    since: Annotated[str, Query(max_length=32)] = "",
    page: Annotated[str, Query(max_length=10)] = "status",
) -> Response:
    """Server-Sent Events: ``change`` when the renewal moves, ``end`` when nothing more will."""
    status = await visible_status(request, renewal_id)  # a stranger gets the 404 page
    stream = StatusStream(
        request,
        renewal_id=status.id,
        since=since,
        wallet_page=page == "wallet",
        read=visible_status,
    )
    return stream_response(stream)


# --- the e-wallet's approval ------------------------------------------------------------------


def qr_code_svg(address: str, title: str) -> Markup:
    """The address as a QR code, an SVG drawn here (no script, no other origin)."""
    code = segno.make(address, error="m")
    svg = code.svg_inline(
        scale=QR_SCALE, border=4, title=title, dark="#0b0c0c", light="#ffffff", omitsize=True
    )
    return Markup(svg)  # noqa: S704 - segno's own SVG; the title is escaped by segno


def _with_return(address: str, renewal_id: str) -> str:
    separator = "&" if "?" in address else "?"
    return f"{address}{separator}{RETURN_PARAMETER}=/renewals/{renewal_id}/wallet/return"


@router.get("/renewals/{renewal_id}/wallet", include_in_schema=False)
async def wallet_page(request: Request, renewal_id: RenewalId) -> Response:
    status = await visible_status(request, renewal_id)
    if status.waiting is not Waiting.WALLET or not status.wallet_url:
        return RedirectResponse(f"/renewals/{status.id}", status_code=303)
    page = renderer_of(request).page(request)
    qr_code = qr_code_svg(status.wallet_url, page._("QR code to approve the payment"))
    return renderer_of(request).render(
        request,
        "portal/status/wallet.html",
        _context(
            request,
            status,
            qr_code=qr_code,
            wallet_link=_with_return(status.wallet_url, status.id),
        ),
        headers=PRIVATE,
    )


@router.get("/renewals/{renewal_id}/wallet/return", include_in_schema=False)
async def wallet_return(request: Request, renewal_id: RenewalId) -> Response:
    """The payer is back from the wallet: ask it how it went (its webhook may have told us
    already: the renewal moves once either way), then the status page."""
    status = await visible_status(request, renewal_id)
    if status.waiting is Waiting.WALLET:
        await payer_returned(services_of(request), status.id)
    return RedirectResponse(f"/renewals/{status.id}", status_code=303)


# --- the receipt ------------------------------------------------------------------------------


async def _receipt(request: Request, renewal_id: str) -> tuple[RenewalStatusView, ReceiptView]:
    status = await visible_status(request, renewal_id)
    if status.receipt_number is None:
        raise receipt_unknown()
    receipt = await receipt_of(
        services_of(request),
        await caller_of(request),
        status.receipt_number,
        status.verification_code,
    )
    return status, receipt


def _receipt_page(
    request: Request,
    status: RenewalStatusView,
    receipt: ReceiptView,
    *,
    errors: object = None,
    sent: bool = False,
    status_code: int = 200,
) -> Response:
    return renderer_of(request).render(
        request,
        "portal/status/receipt.html",
        _context(request, status, receipt=receipt, errors=errors, sent=sent),
        status_code=status_code,
        headers=PRIVATE,
    )


@router.get("/renewals/{renewal_id}/receipt", include_in_schema=False)
async def receipt_page(request: Request, renewal_id: RenewalId, sent: bool = False) -> Response:
    status, receipt = await _receipt(request, renewal_id)
    return _receipt_page(request, status, receipt, sent=sent)


@router.get("/renewals/{renewal_id}/receipt.pdf", include_in_schema=False)
async def receipt_pdf(request: Request, renewal_id: RenewalId) -> Response:
    """The receipt as PDF in the visitor's language."""
    _, receipt = await _receipt(request, renewal_id)
    page = renderer_of(request).page(request)
    document = receipt_document(services_of(request), receipt, page.locale)
    return Response(
        document,
        media_type=PDF_MEDIA_TYPE,
        headers={
            **PRIVATE,
            "content-disposition": f'inline; filename="{receipt.receipt_number}.pdf"',
            "content-language": page.lang,
            "vary": "Accept-Language, Cookie",
        },
    )


@router.post("/renewals/{renewal_id}/receipt/email", include_in_schema=False)
async def receipt_email(
    request: Request,
    renewal_id: RenewalId,
    email: Annotated[str, Form(max_length=EMAIL_TYPED_LENGTH_MAX)] = "",
) -> Response:
    """E-mail the receipt to the address typed (in the visitor's language), then back to the
    receipt saying so (the address is never in an address bar)."""
    status, receipt = await _receipt(request, renewal_id)
    services = services_of(request)
    page = renderer_of(request).page(request)
    limit = services.limits.rates.recovery_per_hour_max
    window_s = RECEIPT_EMAILS_WINDOW_S
    try:
        await check_caller_rate(
            request, await caller_of(request), "receipt_email", limit=limit, window_s=window_s
        )
        await check_rate(
            services, "receipt_email", f"renewal:{status.id}", limit=limit, window_s=window_s
        )
        if not await send_receipt(services, status.id, email, page.locale):
            raise TopupError("no mailer is configured", code="mail_unavailable", retryable=True)
    except TopupError as error:
        errors = form_errors(error, page.locale, fields={"email": "email"})
        code = 429 if error.code == "rate_limited" else 422
        return _receipt_page(request, status, receipt, errors=errors, status_code=code)
    return RedirectResponse(f"/renewals/{status.id}/receipt?sent=1", status_code=303)
