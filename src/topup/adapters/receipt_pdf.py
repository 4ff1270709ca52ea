"""Receipts as PDF (fpdf2): one A4 page, drawn with the first font found that has every
character of the receipt's language; a line the font cannot draw is printed in English instead,
and with no font at all a core font is used: Latin-1, English. Nothing is vendored: fonts come
from the system (``TOPUP_RECEIPT_FONT_PATHS``, else the usual places)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont

logger = logging.getLogger("topup.receipts")

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


def _drawable(text: str, covered: frozenset[int]) -> bool:
    return all(ord(character) in covered for character in text)


def _without_undrawable(text: str, covered: frozenset[int]) -> str:
    kept = "".join(character for character in text if ord(character) in covered)
    return " ".join(kept.split())


def printable_lines(
    local: Sequence[tuple[str, str]],
    english: Sequence[tuple[str, str]],
    covered: frozenset[int],
) -> list[tuple[str, str]]:
    """Each line as the font can draw it: in the receipt's language if the font draws the whole
    line (label and value), else the whole line in English, else the English line without the
    characters the font lacks (a plan named only in Chinese): never a ``?``."""
    lines = []
    for line, line_en in zip(local, english, strict=True):
        for candidate in (line, line_en):
            if all(_drawable(text, covered) for text in candidate):
                lines.append(candidate)
                break
        else:
            label, value = line_en
            lines.append((_without_undrawable(label, covered), _without_undrawable(value, covered)))
    return lines


def draw_receipt(
    local: Sequence[tuple[str, str]],
    english: Sequence[tuple[str, str]],
    *,
    receipt_number: str,
    paid_at: dt.datetime,
    fonts: Sequence[Path],
) -> bytes:
    """``local``: (title, hint) then (label, value) rows in the receipt's language; ``english``:
    the same in English, used for every line the font cannot draw in full."""
    font, covered = _choose_font(fonts, [text for pair in local for text in pair])
    lines = printable_lines(local, english, covered)
    (title, hint), rows = lines[0], lines[1:]
    pdf = FPDF(format="A4")
    pdf.set_title(f"{english[0][0]} {receipt_number}")
    pdf.set_creation_date(paid_at)  # dated when paid
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


class FontedReceiptDrawer:
    """The ``ReceiptDrawer`` port: ``draw_receipt`` with the fonts of the settings."""

    def __init__(self, fonts: Sequence[Path]) -> None:
        self.fonts = tuple(fonts)

    def draw(
        self,
        local: Sequence[tuple[str, str]],
        english: Sequence[tuple[str, str]],
        *,
        receipt_number: str,
        paid_at: dt.datetime,
    ) -> bytes:
        return draw_receipt(
            local, english, receipt_number=receipt_number, paid_at=paid_at, fonts=self.fonts
        )
