"""GET /api/v1/receipts/{receipt_number}: a paid renewal's receipt, as JSON or (``Accept:
application/pdf``) as a PDF in the caller's language.

The PDF is drawn with the first font found (``TOPUP_RECEIPT_FONT_PATHS``, else the usual places)
that has every character of the caller's language; a text the font cannot draw is printed in
English instead, and with no font at all the PDF uses a core font: Latin-1, English.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fpdf import FPDF
from fpdf.fonts import TTFFont
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from topup.entrypoints.api.dependencies import (
    CallerDependency,
    LanguageDependency,
    ServicesDependency,
    application_of,
)
from topup.entrypoints.api.schemas import problems
from topup.services import receipts
from topup.services.receipts import VERIFICATION_CODE_TYPED_LENGTH_MAX, receipt_lines, receipt_text

logger = logging.getLogger("topup.api")
router = APIRouter()

PDF_MEDIA_TYPE = "application/pdf"
RECEIPT_NUMBER_TYPED_LENGTH_MAX = 40  # R-XXXX-XXXX-XXXX with blanks, as someone may type it
FONT_SIZE_PT = 11
TITLE_SIZE_PT = 20
LABEL_WIDTH_MM = 55
LINE_HEIGHT_MM = 7
DEFAULT_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:\\Windows\\Fonts\\msyh.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
)
LATIN_1 = frozenset(range(256))
FONT_MAGIC = (b"\x00\x01\x00\x00", b"true", b"OTTO", b"ttcf")  # the first bytes of a font file


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
) -> Any:
    """A receipt, for staff, the card's owner, or with the verification code printed on it.
    Any other request — an unknown or unpaid number, a wrong code — is the same 404."""
    receipt = await receipts.receipt_of(
        services,
        caller,
        receipt_number[:RECEIPT_NUMBER_TYPED_LENGTH_MAX],
        verification_code,
        locale=language,
    )
    headers = {"Vary": "Accept, Accept-Language", "Cache-Control": "private, no-store"}
    if wants_pdf(request.headers.get("accept")):
        paths = font_paths(application_of(request).settings.receipt_font_paths)
        document = receipt_pdf(receipt, language, paths)
        headers["Content-Disposition"] = f'inline; filename="{receipt["receipt_number"]}.pdf"'
        headers["Content-Language"] = language.replace("_", "-")
        return Response(document, media_type=PDF_MEDIA_TYPE, headers=headers)
    return JSONResponse(receipt, headers=headers)


# --- the PDF ---------------------------------------------------------------------------------


def font_paths(setting: str) -> tuple[Path, ...]:
    """The fonts to try, in order: those of the setting, else the usual places."""
    named = [part.strip() for part in setting.split(os.pathsep) if part.strip()]
    return tuple(Path(name) for name in (named or DEFAULT_FONT_PATHS))


@functools.cache
def font_coverage(path: Path) -> frozenset[int] | None:
    """The characters a font file draws; None if it is missing or not a font fpdf2 reads."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(FONT_MAGIC[0]))
    except OSError:
        return None
    if magic not in FONT_MAGIC:  # not TrueType, OpenType or a collection of them
        return None
    probe = FPDF()
    try:
        probe.add_font("probe", fname=path)
    except Exception as error:  # any unreadable font is skipped, whatever fpdf2 finds wrong
        logger.warning("font %s cannot be used for receipts: %s", path, type(error).__name__)
        return None
    try:
        loaded = probe.fonts["probe"]
        return frozenset(loaded.cmap) if isinstance(loaded, TTFFont) else None
    finally:
        _close_fonts(probe)


def _close_fonts(pdf: FPDF) -> None:
    """fpdf2 reads font files lazily and leaves them open; close them once done."""
    for loaded in pdf.fonts.values():
        if isinstance(loaded, TTFFont):
            loaded.ttfont.close()


def _choose_font(paths: Sequence[Path], texts: Sequence[str]) -> tuple[Path | None, frozenset[int]]:
    """The first font that draws every character of ``texts``, else the first font found, else
    none (a core font: Latin-1)."""
    wanted = {ord(character) for text in texts for character in text}
    first: tuple[Path | None, frozenset[int]] = (None, LATIN_1)
    for path in paths:
        covered = font_coverage(path)
        if covered is None:
            continue
        if wanted <= covered:
            return path, covered
        if first[0] is None:
            first = (path, covered)
    return first


def receipt_pdf(receipt: dict[str, Any], locale: str, fonts: Sequence[Path]) -> bytes:
    """The receipt as a one-page A4 PDF in ``locale`` (English where the font cannot draw it)."""
    local = [(receipt_text("receipt_title", locale), receipt_text("verification_hint", locale))]
    english = [(receipt_text("receipt_title", "en"), receipt_text("verification_hint", "en"))]
    local += receipt_lines(receipt, locale)
    english += receipt_lines(receipt, "en")
    font, covered = _choose_font(fonts, [text for pair in local for text in pair])

    def printable(text: str, fallback: str) -> str:
        for candidate in (text, fallback):
            if all(ord(character) in covered for character in candidate):
                return candidate
        return "".join(c if ord(c) in covered else "?" for c in fallback)

    lines = [
        (printable(label, label_en), printable(value, value_en))
        for (label, value), (label_en, value_en) in zip(local, english, strict=True)
    ]
    (title, hint), rows = lines[0], lines[1:]
    pdf = FPDF(format="A4")
    pdf.set_title(f"{english[0][0]} {receipt['receipt_number']}")
    pdf.set_creation_date(dt.datetime.fromisoformat(receipt["paid_at"]))  # dated when paid
    pdf.add_page()
    family = "helvetica"
    if font is not None:
        pdf.add_font("receipt", fname=font)
        family = "receipt"
    pdf.set_font(family, size=TITLE_SIZE_PT)
    pdf.cell(text=title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(LINE_HEIGHT_MM)
    pdf.set_font(family, size=FONT_SIZE_PT)
    for label, value in rows:
        pdf.cell(w=LABEL_WIDTH_MM, h=LINE_HEIGHT_MM, text=label)
        pdf.multi_cell(w=0, h=LINE_HEIGHT_MM, text=value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(LINE_HEIGHT_MM)
    pdf.multi_cell(w=0, h=LINE_HEIGHT_MM, text=hint, new_x="LMARGIN", new_y="NEXT")
    try:
        return bytes(pdf.output())
    finally:
        _close_fonts(pdf)
