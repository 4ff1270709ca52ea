"""What makes an e-mail, a password and a language acceptable for an account, and the text that
carries a one-time code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup.adapters import messages
from topup.domain.accounts import (
    ACCOUNT_LANGUAGES,
    PASSWORD_LENGTH_MAX,
    PASSWORD_LENGTH_MIN,
    check_email,
    check_language,
    check_password,
    normalise_email,
)
from topup.domain.errors import InputError
from topup.services.accounts import link_code_text


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("aisyah@example.com", "aisyah@example.com"),
        ("  Aisyah@Example.COM\t", "aisyah@example.com"),
        ("wei.ming+topup@mail.example.my", "wei.ming+topup@mail.example.my"),
    ],
)
def test_an_email_is_kept_trimmed_and_lower_case(typed: str, kept: str) -> None:
    assert check_email(typed) == kept


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "aisyah",
        "aisyah@",
        "@example.com",
        "aisyah@example",
        "aisyah@@example.com",
        "ai syah@example.com",
        "aisyah@example..com",
        "aisyah@.com",
        "a\x00b@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_a_text_that_is_not_an_email_is_refused_naming_the_field(typed: str) -> None:
    with pytest.raises(InputError) as caught:
        check_email(typed)
    assert (caught.value.code, caught.value.field) == ("email_invalid", "email")


@given(st.text(max_size=80))
def test_normalising_an_email_twice_changes_nothing(typed: str) -> None:
    once = normalise_email(typed)
    assert normalise_email(once) == once


def test_a_password_between_the_bounds_is_accepted_and_outside_refused_with_the_bound() -> None:
    assert check_password("x" * PASSWORD_LENGTH_MIN) == "x" * PASSWORD_LENGTH_MIN
    assert check_password("x" * PASSWORD_LENGTH_MAX) == "x" * PASSWORD_LENGTH_MAX
    with pytest.raises(InputError) as short:
        check_password("x" * (PASSWORD_LENGTH_MIN - 1))
    assert (short.value.code, short.value.params) == ("password_too_short", {"minimum": "10"})
    with pytest.raises(InputError) as long:
        check_password("x" * (PASSWORD_LENGTH_MAX + 1))
    assert (long.value.code, long.value.params) == ("password_too_long", {"maximum": "256"})


def test_a_password_typed_in_another_unicode_form_is_the_same_password() -> None:
    composed = "caf\u00e9 au lait!"
    decomposed = "cafe\u0301 au lait!"
    assert check_password(composed) == check_password(decomposed)


@pytest.mark.parametrize(
    ("typed", "language"), [("en", "en"), ("zh-Hans", "zh_Hans"), ("ZH_HANS", "zh_Hans")]
)
def test_a_language_is_taken_in_its_usual_spellings(typed: str, language: str) -> None:
    assert check_language(typed) == language


def test_an_unknown_language_is_refused_listing_those_we_speak() -> None:
    with pytest.raises(InputError) as caught:
        check_language("fr")
    assert caught.value.code == "language_unsupported"
    text = messages.message_for(caught.value, "ms")
    assert "fr" in text and "zh_Hans" in text


@pytest.mark.parametrize("language", ACCOUNT_LANGUAGES)
def test_the_code_text_names_the_code_and_its_lifetime_in_each_language(language: str) -> None:
    text = link_code_text("042917", minutes=10, language=language)
    assert "042917" in text and "10" in text
    assert text != link_code_text("042917", minutes=10, language="en") or language == "en"


def test_the_code_text_falls_back_to_english() -> None:
    assert link_code_text("1", minutes=1, language="fr") == link_code_text(
        "1", minutes=1, language="en"
    )
