"""GET /api/v1/receipts/{receipt_number}: a paid renewal's receipt, as JSON or (``Accept:
application/pdf``) as a PDF in the caller's language.

The PDF is drawn with the first font found (``TOPUP_RECEIPT_FONT_PATHS``, else the usual places)
that has every character of the caller's language; a line the font cannot draw is printed in
English instead, and with no font at all the PDF uses a core font: Latin-1, English.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from topup.adapters.receipt_pdf import (
    draw_receipt,
    font_paths,
)
from topup.entrypoints.api.dependencies import (
    CallerDependency,
    LanguageDependency,
    ServicesDependency,
    application_of,
)
from topup.entrypoints.api.schemas import problems
from topup.entrypoints.views_json import receipt_json
from topup.i18n import language_tag
from topup.services import receipts
from topup.services.receipts import (
    VERIFICATION_CODE_TYPED_LENGTH_MAX,
    receipt_lines,
    receipt_title,
    verification_hint,
)
from topup.services.views import ReceiptView

logger = logging.getLogger("topup.api")
router = APIRouter()

PDF_MEDIA_TYPE = "application/pdf"
RECEIPT_NUMBER_TYPED_LENGTH_MAX = 40  # R-XXXX-XXXX-XXXX with blanks, as someone may type it


class ReceiptPayment(BaseModel):
    method: str
    method_name: str
    brand: str
    last4: str


class ReceiptRefund(BaseModel):
    refunded_at: str
    amount: str
    amount_minor: int
    currency: str


class Receipt(BaseModel):
    """A paid renewal's receipt. Times are UTC (``paid_at``) and the operator's local time."""

    receipt_number: str
    verification_code: str
    operator: str
    paid_at: str
    paid_at_local: str
    time_zone: str
    card_number: str  # masked
    card_kind: str
    plan_code: str
    plan_name: str
    plan_names: dict[str, str]
    amount: str
    amount_minor: int
    currency: str
    payment: ReceiptPayment
    renewal_id: str
    status: str
    refund: ReceiptRefund | None


def wants_pdf(accept: str | None) -> bool:
    """Whether ``Accept`` prefers a PDF to JSON (``*/*`` and no header mean JSON)."""
    weights: dict[str, float] = {}
    for part in (accept or "").split(",")[:20]:
        media_type, _, parameters = part.strip().partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[media_type.strip().lower()] = weight
    pdf = weights.get(PDF_MEDIA_TYPE, 0.0)
    return pdf > 0 and pdf >= weights.get("application/json", 0.0)


@router.get(
    "/api/v1/receipts/{receipt_number}",
    response_model=Receipt,
    tags=["receipts"],
    responses={
        200: {"content": {PDF_MEDIA_TYPE: {}}, "description": "The receipt (JSON or PDF)."},
        **problems(404),
    },
)
async def get_receipt(
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
    receipt_number: str,
    verification_code: Annotated[
        str | None, Query(max_length=VERIFICATION_CODE_TYPED_LENGTH_MAX)
    ] = None,
    verification_code_header: Annotated[
        str | None,
        Header(
            alias="X-Verification-Code",
            max_length=VERIFICATION_CODE_TYPED_LENGTH_MAX,
            description="The code printed on the receipt; kept out of logs, unlike the query.",
        ),
    ] = None,
) -> Any:
    """A receipt, for staff, the card's owner, or with the verification code printed on it.
    Any other request — an unknown or unpaid number, a wrong code — is the same 404."""
    receipt = await receipts.receipt_of(
        services,
        caller,
        receipt_number[:RECEIPT_NUMBER_TYPED_LENGTH_MAX],
        verification_code_header or verification_code,
    )
    headers = {"Vary": "Accept, Accept-Language", "Cache-Control": "private, no-store"}
    if wants_pdf(request.headers.get("accept")):
        paths = font_paths(application_of(request).settings.receipt_font_paths)
        document = receipt_pdf(receipt, language, paths)
        headers["Content-Disposition"] = f'inline; filename="{receipt.receipt_number}.pdf"'
        headers["Content-Language"] = language_tag(language)
        return Response(document, media_type=PDF_MEDIA_TYPE, headers=headers)
    return JSONResponse(receipt_json(receipt, language), headers=headers)


def receipt_pdf(receipt: ReceiptView, locale: str, fonts: Sequence[Path]) -> bytes:
    """The receipt as a one-page A4 PDF in ``locale``, each line the font cannot draw in
    English (the receipt's lines in English: its plan's and method's English names)."""
    local = [(receipt_title(locale), verification_hint(locale)), *receipt_lines(receipt, locale)]
    lines_en = [(receipt_title("en"), verification_hint("en")), *receipt_lines(receipt, "en")]
    return draw_receipt(
        local,
        lines_en,
        receipt_number=receipt.receipt_number,
        paid_at=receipt.paid_at.astimezone(dt.UTC),
        fonts=fonts,
    )
