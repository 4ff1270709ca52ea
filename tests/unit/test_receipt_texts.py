"""The texts of receipts and recovery e-mails: every one in four languages, with the same
placeholders, and the language a caller asks for falls back sensibly."""

from __future__ import annotations

import re
import string

import pytest

from topup.services.receipts import LOCALES, _texts, receipt_text, text_keys, text_locale


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_receipt_text_has_all_four_languages_with_the_same_placeholders() -> None:
    texts = _texts()
    assert len(texts) >= 20
    for key, by_locale in texts.items():
        assert set(by_locale) == set(LOCALES), key
        assert all(text.strip() for text in by_locale.values()), key
        assert len({frozenset(_placeholders(text)) for text in by_locale.values()}) == 1, key


def test_every_chinese_text_is_written_in_chinese() -> None:
    for key, by_locale in _texts().items():
        assert re.search(r"[\u4e00-\u9fff]", by_locale["zh_Hans"]), key


@pytest.mark.parametrize(
    ("asked", "used"),
    [("en", "en"), ("zh_Hans", "zh_Hans"), ("zh-CN", "zh_Hans"), ("ms-MY", "ms"), ("id", "id"),
     ("in", "id"), ("fr", "en"), ("", "en")],
)  # fmt: skip
def test_a_language_falls_back_to_its_own_then_to_english(asked: str, used: str) -> None:
    assert text_locale(asked) == used


def test_placeholders_are_filled_in_the_chosen_language() -> None:
    assert receipt_text("receipt_email_subject", "id", receipt_number="R-1") == "Struk Anda R-1"
    assert "recovery_email_body" in text_keys()
