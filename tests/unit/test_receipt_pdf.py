"""The PDF receipt: drawn with a Unicode font when one is found, in English where the font cannot
draw the caller's language, and in Latin-1 English with no font at all; never a crash."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from topup.adapters import receipt_pdf as drawing
from topup.adapters.receipt_pdf import DEFAULT_FONT_PATHS, font_coverage, font_paths
from topup.domain.cards import CardKind
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus
from topup.entrypoints.api.receipts import receipt_pdf, wants_pdf
from topup.services.views import ReceiptView

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_dejavu = pytest.mark.skipif(not DEJAVU.is_file(), reason="DejaVuSans is not installed here")


def receipt(**changes: Any) -> ReceiptView:
    view = ReceiptView(
        receipt_number="R-K5N7-6Z05-H5HJ",
        verification_code="P2NSY-VK6A9",
        operator="Demo operator (Malaysia)",
        paid_at=dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC),
        time_zone="Asia/Kuala_Lumpur",
        card_number="+60 12-*** 6789",
        card_kind=CardKind.PREPAID,
        plan_code="pack_5gb_7d",
        plan_names={"en": "5 GB, 7 days", "zh_Hans": "5 GB，7天", "ms": "5 GB, 7 hari"},
        amount=Money(1000, "MYR"),
        method="credit_card",
        method_names={"en": "credit card", "zh_Hans": "信用卡"},
        brand="visa",
        last4="4242",
        renewal_id="2c06b4a0-ab3a-452c-b136-94dd8ab71eac",
        status=RenewalStatus.REFUNDED,
        refunded_at=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC),
    )
    return dataclasses.replace(view, **changes)


def is_pdf(document: bytes) -> bool:
    return document.startswith(b"%PDF-") and document.rstrip().endswith(b"%%EOF")


@pytest.mark.parametrize("locale", ["en", "zh_Hans", "ms", "id"])
def test_without_any_font_the_receipt_is_printed_in_latin_1(locale: str, tmp_path: Path) -> None:
    document = receipt_pdf(receipt(), locale, [tmp_path / "missing.ttf"])
    assert is_pdf(document)
    assert b"/Helvetica" in document


@needs_dejavu
@pytest.mark.parametrize("locale", ["en", "zh_Hans", "ms", "id"])
def test_a_unicode_font_without_chinese_falls_back_to_english_for_what_it_cannot_draw(
    locale: str,
) -> None:
    document = receipt_pdf(receipt(), locale, [DEJAVU])
    assert is_pdf(document)
    assert b"DejaVu" in document


@needs_dejavu
def test_a_plan_named_only_in_chinese_does_not_break_the_pdf() -> None:
    chinese_only = receipt(plan_names={"en": "夜间无限流量"})
    for fonts in ([DEJAVU], []):
        assert is_pdf(receipt_pdf(chinese_only, "zh_Hans", fonts))


def drawn_texts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the receipt's PDF draws, in order (title, label, value, ..., hint)."""
    texts: list[str] = []

    class Recording(drawing.FPDF):
        def cell(self, *args: Any, **kwargs: Any) -> Any:
            texts.append(kwargs.get("text", args[2] if len(args) > 2 else ""))
            return super().cell(*args, **kwargs)

        def multi_cell(self, *args: Any, **kwargs: Any) -> Any:
            texts.append(kwargs.get("text", args[2] if len(args) > 2 else ""))
            return super().multi_cell(*args, **kwargs)

    monkeypatch.setattr(drawing, "FPDF", Recording)
    return texts


@needs_dejavu
def test_a_line_a_latin_font_cannot_draw_in_chinese_is_printed_whole_in_english_never_with_question_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = drawn_texts(monkeypatch)
    assert is_pdf(receipt_pdf(receipt(), "zh_Hans", [DEJAVU]))
    assert "?" not in "".join(texts)
    payment = texts.index("Payment")
    assert texts[payment + 1] == "credit card VISA 4242"
    assert texts[0] == "Receipt"
    assert "Plan" in texts and "5 GB, 7 days (pack_5gb_7d)" in texts


@needs_dejavu
def test_without_the_english_names_an_undrawable_name_is_left_out_never_printed_as_question_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = drawn_texts(monkeypatch)
    chinese_only = receipt(plan_names={"en": "夜间无限流量"}, method_names={"en": "信用卡"})
    assert is_pdf(receipt_pdf(chinese_only, "zh_Hans", [DEJAVU]))
    assert "?" not in "".join(texts)
    assert texts[texts.index("Payment") + 1] == "VISA 4242"
    assert texts[texts.index("Plan") + 1] == "(pack_5gb_7d)"


def test_a_line_is_kept_in_the_receipts_language_when_the_font_draws_all_of_it() -> None:
    # A font with the Chinese of the payment line only (and Latin): the amount's label is not in it.
    covered = frozenset(ord(character) for character in "付款方式信用卡金 VISA 4242 Amount MYR10.")
    lines = drawing.printable_lines(
        [("付款方式", "信用卡 VISA 4242"), ("金额", "MYR 10.00")],
        [("Payment", "credit card VISA 4242"), ("Amount", "MYR 10.00")],
        covered,
    )
    assert lines == [("付款方式", "信用卡 VISA 4242"), ("Amount", "MYR 10.00")]


def test_a_file_that_is_not_a_font_is_skipped(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    assert font_coverage(broken) is None
    assert is_pdf(receipt_pdf(receipt(), "en", [broken]))


def test_the_font_setting_replaces_the_usual_places(tmp_path: Path) -> None:
    assert font_paths("") == tuple(Path(path) for path in DEFAULT_FONT_PATHS)
    assert font_paths(f"{tmp_path}/a.ttf:{tmp_path}/b.ttf") == (
        tmp_path / "a.ttf",
        tmp_path / "b.ttf",
    )


@pytest.mark.parametrize(
    ("accept", "pdf"),
    [(None, False), ("*/*", False), ("application/json", False), ("application/pdf", True),
     ("application/pdf, application/json;q=0.5", True), ("application/json, application/pdf", True),
     ("application/pdf;q=0.2, application/json", False), ("application/pdf;q=0", False)],
)  # fmt: skip
def test_a_pdf_is_given_when_the_accept_header_prefers_it(accept: str | None, pdf: bool) -> None:
    assert wants_pdf(accept) is pdf
