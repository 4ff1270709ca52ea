"""The locales the platform speaks and Accept-Language negotiation: q-values, a tag falling back
to its language (zh-CN -> zh_Hans, ms-MY -> ms, in -> id), then to the profile's first locale."""

from __future__ import annotations

import pytest

from topup import i18n
from topup.adapters.profiles import load_profile
from topup.domain.accounts import ACCOUNT_LANGUAGES


@pytest.mark.parametrize(
    ("asked", "used"),
    [("en", "en"), ("zh_Hans", "zh_Hans"), ("zh-Hans", "zh_Hans"), ("zh-CN", "zh_Hans"),
     ("zh", "zh_Hans"), ("zh-Hant-TW", "zh_Hans"), ("ZH-cn", "zh_Hans"), ("ms-MY", "ms"),
     ("ms_MY", "ms"), ("id", "id"), ("id-ID", "id"), ("in", "id"), ("en_GB", "en"),
     ("zh-Hans-CN-u-ca-chinese", "zh_Hans"), ("fr", "en"), ("", "en"), ("*", "en"),
     ("x-klingon", "en"), ("é", "en")],
)  # fmt: skip
def test_a_language_falls_back_to_its_own_then_to_english(asked: str, used: str) -> None:
    assert i18n.resolve_or_default(asked) == used


@pytest.mark.parametrize(
    ("header", "chosen"),
    [("zh-CN,zh;q=0.9,en;q=0.8", "zh_Hans"), ("en;q=0.5, ms-MY", "ms"),
     ("fr-CA, fr;q=0.9, id;q=0.2", "id"), ("in", "id"), ("en;q=0, ms;q=0.1", "ms"),
     ("zh;q=abc, ms", "ms"), ("zh;q=2, ms;q=0.5", "ms"), ("ms, id", "ms"),
     ("id;q=0.8, ms;q=0.8", "id"), ("*, ms;q=0.1", "ms"), ("zh-Hans", "zh_Hans")],
)  # fmt: skip
def test_the_most_wanted_language_we_speak_is_chosen(header: str, chosen: str) -> None:
    assert i18n.negotiate(header) == chosen


def test_without_a_language_we_speak_the_profiles_first_locale_is_used() -> None:
    indonesia = load_profile("id")
    assert i18n.negotiate("fr, de;q=0.5", default=indonesia.default_locale) == "id"
    assert i18n.negotiate(None, default=indonesia.default_locale) == "id"
    assert i18n.negotiate("", default="en_MY") == "en"
    assert i18n.negotiate("fr") == "en"


def test_only_the_first_twenty_languages_of_a_header_are_read() -> None:
    header = ", ".join(["fr"] * 20 + ["ms"])
    assert i18n.negotiate(header) == "en"
    assert i18n.negotiate("x" * 10_000 + ", ms") == "ms"


def test_negotiation_can_be_narrowed_to_the_locales_a_page_has() -> None:
    assert i18n.negotiate("zh-CN, ms;q=0.5", available=("en", "ms")) == "ms"


def test_a_locale_is_written_as_a_language_tag_on_the_wire() -> None:
    assert [i18n.language_tag(locale) for locale in i18n.LOCALES] == ["en", "zh-Hans", "ms", "id"]


def test_an_account_may_choose_exactly_the_languages_the_catalogues_speak() -> None:
    # The domain keeps its own list (it imports no Babel); the two must not drift apart.
    assert ACCOUNT_LANGUAGES == i18n.LOCALES
