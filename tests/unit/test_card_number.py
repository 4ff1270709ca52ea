from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup.adapters.profiles import load_profile
from topup.domain.card_number import (
    CardNumber,
    CardNumberKind,
    luhn_check_digit,
    luhn_is_valid,
    parse_card_number,
)
from topup.domain.errors import InputError, InvariantError
from topup.domain.profile import OperatorProfile

MALAYSIA = load_profile("my")
INDONESIA = load_profile("id")
PROFILES = {"my": MALAYSIA, "id": INDONESIA}

# 19 digits with a correct Luhn check digit (the last one).
ICCID = "8960012345678901234"


@pytest.mark.parametrize(
    ("profile_code", "text", "expected"),
    [
        ("my", "012-345 6789", "+60123456789"),
        ("my", "+60 12 345 6789", "+60123456789"),
        ("my", "60123456789", "+60123456789"),
        ("my", "0123456789", "+60123456789"),
        ("my", "(012) 345.6789", "+60123456789"),
        ("my", "0060123456789", "+60123456789"),
        ("my", "011-2345 6789", "+601123456789"),
        ("my", "０１２－３４５ ６７８９", "+60123456789"),
        ("my", " 012\u00a0345\t6789 ", "+60123456789"),
        ("my", "012–345–6789", "+60123456789"),
        ("id", "0812 3456 7890", "+6281234567890"),
        ("id", "+62 812-3456-7890", "+6281234567890"),
        ("id", "6281234567890", "+6281234567890"),
        # Also a valid Indonesian landline (+62 628...), but a data card is a mobile line.
        ("id", "62812345678", "+62812345678"),
    ],
)
def test_local_and_international_forms_parse_to_the_same_card(
    profile_code: str, text: str, expected: str
) -> None:
    card = parse_card_number(text, PROFILES[profile_code])

    assert card == CardNumber(CardNumberKind.MSISDN, expected)


@pytest.mark.parametrize(
    ("profile_code", "text", "code"),
    [
        ("my", "", "card_number_empty"),
        ("my", "   ", "card_number_empty"),
        ("id", " - ( ) ", "card_number_empty"),
        ("my", "+", "card_number_empty"),
        ("my", "012-345 678O", "card_number_invalid_characters"),
        ("id", "0812 3456 789x", "card_number_invalid_characters"),
        ("my", "012+3456789", "card_number_invalid_characters"),
        ("my", "++60123456789", "card_number_invalid_characters"),
        ("my", "012/345 6789", "card_number_invalid_characters"),
        ("my", "0123", "card_number_wrong_length"),
        ("my", "012 345 678", "card_number_wrong_length"),
        ("my", "012 3456 78901", "card_number_wrong_length"),
        ("my", "1", "card_number_wrong_length"),
        ("my", "+60", "card_number_wrong_length"),
        ("id", "08123", "card_number_wrong_length"),
        ("id", "0812 3456 7890 1234", "card_number_wrong_length"),
        ("my", "8960012345678901", "card_number_wrong_length"),
        ("my", "896001234567890123456", "card_number_wrong_length"),
        ("my", "8960012345678901235", "card_number_bad_check_digit"),
        ("id", "8962012345678901231", "card_number_bad_check_digit"),
        ("my", "03-2345 6789", "card_number_not_mobile"),
        ("my", "+60 3-2345 6789", "card_number_not_mobile"),
        ("my", "1300 88 1234", "card_number_not_mobile"),
        ("id", "021 1234 5678", "card_number_not_mobile"),
        ("my", "+65 8123 4567", "card_number_wrong_country"),
        ("id", "+60 12 345 6789", "card_number_wrong_country"),
        ("my", "+1 650 253 0000", "card_number_wrong_country"),
        ("my", "022 345 6789", "card_number_invalid"),
        ("my", "+999 123 4567", "card_number_invalid"),
    ],
)
def test_each_kind_of_mistake_has_its_own_code(profile_code: str, text: str, code: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_card_number(text, PROFILES[profile_code])

    assert caught.value.code == code
    assert caught.value.field == "card_number"


def test_iccid_with_correct_check_digit_parses_as_iccid() -> None:
    card = parse_card_number("8960 0123 4567 8901 234", MALAYSIA)

    assert card == CardNumber(CardNumberKind.ICCID, ICCID)


def test_iccid_with_a_plus_is_read_as_a_phone_number() -> None:
    with pytest.raises(InputError) as caught:
        parse_card_number("+" + ICCID, MALAYSIA)

    assert caught.value.code != "card_number_bad_check_digit"


def test_messages_show_an_example_of_the_profiles_own_numbers() -> None:
    with pytest.raises(InputError) as malaysian:
        parse_card_number("03-2345 6789", MALAYSIA)
    with pytest.raises(InputError) as indonesian:
        parse_card_number("021 1234 5678", INDONESIA)

    assert "012-345 6789" in malaysian.value.message
    assert "0812" in indonesian.value.message


@pytest.mark.parametrize(
    ("card", "masked"),
    [
        (CardNumber(CardNumberKind.MSISDN, "+60123456789"), "+60 12-*** 6789"),
        (CardNumber(CardNumberKind.MSISDN, "+601123456789"), "+60 11-**** 6789"),
        (CardNumber(CardNumberKind.MSISDN, "+6281234567890"), "+62 81-***** 7890"),
        (CardNumber(CardNumberKind.ICCID, ICCID), "8960***********1234"),
    ],
)
def test_masked_number_keeps_country_code_first_and_last_digits(
    card: CardNumber, masked: str
) -> None:
    assert card.masked() == masked


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (CardNumberKind.MSISDN, "0123456789"),
        (CardNumberKind.MSISDN, "+60 12 345 6789"),
        (CardNumberKind.ICCID, "89600123"),
        (CardNumberKind.ICCID, "+8960012345678901234"),
    ],
)
def test_card_number_in_non_canonical_form_is_a_bug(kind: CardNumberKind, value: str) -> None:
    with pytest.raises(InvariantError):
        CardNumber(kind, value)


@pytest.mark.parametrize(
    ("payload", "check_digit"),
    [("7992739871", 3), ("896001234567890123", 4), ("0", 0), ("4111111111111111"[:-1], 1)],
)
def test_luhn_check_digit_matches_known_examples(payload: str, check_digit: int) -> None:
    assert luhn_check_digit(payload) == check_digit
    assert luhn_is_valid(payload + str(check_digit))


def test_luhn_rejects_a_single_digit_and_non_digits() -> None:
    assert not luhn_is_valid("0")
    with pytest.raises(InvariantError):
        luhn_is_valid("4111 1111")


# --- properties ---------------------------------------------------------------------------------

_MALAYSIAN_MOBILE = re.compile(
    phonenumbers.PhoneMetadata.metadata_for_region("MY").mobile.national_number_pattern,
    re.ASCII,
)


def _formats(number: phonenumbers.PhoneNumber) -> list[str]:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return [
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        e164,
        e164.removeprefix("+"),
    ]


@given(national=st.from_regex(_MALAYSIAN_MOBILE, fullmatch=True))
def test_every_malaysian_mobile_number_in_any_format_parses_to_its_e164(national: str) -> None:
    number = phonenumbers.parse("+60" + national)
    assert phonenumbers.is_valid_number(number)
    expected = CardNumber(
        CardNumberKind.MSISDN,
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
    )

    for text in _formats(number):
        assert parse_card_number(text, MALAYSIA) == expected, text


_iccid_payloads = st.integers(min_value=15, max_value=17).flatmap(
    lambda length: st.text(alphabet="0123456789", min_size=length, max_size=length)
)


@given(
    payload=_iccid_payloads,
    position=st.integers(min_value=0),
    replacement=st.integers(min_value=1, max_value=9),
    profile=st.sampled_from([MALAYSIA, INDONESIA]),
)
def test_iccid_with_luhn_digit_parses_and_any_single_changed_digit_is_caught(
    payload: str, position: int, replacement: int, profile: OperatorProfile
) -> None:
    iccid = "89" + payload + str(luhn_check_digit("89" + payload))

    assert parse_card_number(iccid, profile) == CardNumber(CardNumberKind.ICCID, iccid)

    index = 2 + position % (len(iccid) - 2)  # keep the "89" that makes it an ICCID
    changed_digit = str((int(iccid[index]) + replacement) % 10)
    typo = iccid[:index] + changed_digit + iccid[index + 1 :]
    with pytest.raises(InputError) as caught:
        parse_card_number(typo, profile)
    assert caught.value.code == "card_number_bad_check_digit"


@given(text=st.text(), profile=st.sampled_from([MALAYSIA, INDONESIA]))
def test_parsing_any_text_either_succeeds_or_raises_input_error(
    text: str, profile: OperatorProfile
) -> None:
    try:
        card = parse_card_number(text, profile)
    except InputError as error:
        assert error.code.startswith("card_number_")
    else:
        assert card.masked()


@given(
    text=st.text(alphabet="0123456789 +-()", max_size=25),
    profile=st.sampled_from([MALAYSIA, INDONESIA]),
)
def test_parsing_digit_heavy_text_either_succeeds_or_raises_input_error(
    text: str, profile: OperatorProfile
) -> None:
    try:
        card = parse_card_number(text, profile)
    except InputError as error:
        assert error.code.startswith("card_number_")
    else:
        assert parse_card_number(card.value, profile) == card
