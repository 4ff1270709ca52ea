"""Payment card details are checked field by field, each bad field with its own code."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from topup.domain.card_number import luhn_check_digit
from topup.domain.errors import InputError, InvariantError, PaymentError
from topup.domain.payment_card import (
    CardBrand,
    CardFacts,
    CardFunding,
    PaymentCardDetailsInvalid,
    brand_from_digits,
    check_card_details,
    check_international,
    check_method_matches,
    normalize_card_number,
)
from topup.ports import PaymentCardDetails

TODAY = dt.date(2026, 11, 25)
VISA = CardFacts(brand=CardBrand.VISA)
AMEX = CardFacts(brand=CardBrand.AMEX)
GOOD = PaymentCardDetails(number="4242424242424242", expiry_month=12, expiry_year=2028, cvc="123")
GOOD_AMEX = PaymentCardDetails(
    number="378282246310005", expiry_month=12, expiry_year=2028, cvc="1234"
)

# Written out here, independently of the module, so a wrong table there fails a test.
LENGTHS = {
    CardBrand.VISA: {13, 16, 19},
    CardBrand.MASTERCARD: {16},
    CardBrand.AMEX: {15},
    CardBrand.UNIONPAY: {16, 17, 18, 19},
    CardBrand.JCB: {16, 17, 18, 19},
    CardBrand.DISCOVER: {16, 17, 18, 19},
    CardBrand.UNKNOWN: set(range(12, 20)),
}


def check(
    details: PaymentCardDetails = GOOD,
    *,
    today: dt.date = TODAY,
    holder_name_required: bool = False,
    holder_name: str | None = None,
    facts: CardFacts | None = None,
) -> None:
    if facts is None:
        facts = CardFacts(brand=brand_from_digits(normalize_card_number(details.number)))
    check_card_details(
        details,
        today=today,
        holder_name_required=holder_name_required,
        holder_name=holder_name,
        facts=facts,
    )


def problems_of(**kwargs: Any) -> dict[str, str]:
    """Field -> code of every problem found."""
    with pytest.raises(PaymentCardDetailsInvalid) as caught:
        check(**kwargs)
    return {problem.field or "": problem.code for problem in caught.value.problems}


def with_luhn(payload: str) -> str:
    return payload + str(luhn_check_digit(payload))


def test_good_details_pass() -> None:
    check(GOOD)
    check(GOOD_AMEX)
    check(GOOD, holder_name_required=True, holder_name="TAN AH KOW")


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"number": ""}, "payment.card_number", "payment_card_number_empty"),
        ({"number": " - - "}, "payment.card_number", "payment_card_number_empty"),
        (
            {"number": "4242 4242 4242 424O"},
            "payment.card_number",
            "payment_card_number_invalid_characters",
        ),
        (
            {"number": "4242.4242.4242.4242"},
            "payment.card_number",
            "payment_card_number_invalid_characters",
        ),
        ({"number": "424242424242424"}, "payment.card_number", "payment_card_number_wrong_length"),
        (
            {"number": "42424242424242424242"},
            "payment.card_number",
            "payment_card_number_wrong_length",
        ),
        ({"number": "55555555555544"}, "payment.card_number", "payment_card_number_wrong_length"),
        (
            {"number": "3782822463100050", "cvc": "1234"},
            "payment.card_number",
            "payment_card_number_wrong_length",
        ),
        ({"number": "99999999999"}, "payment.card_number", "payment_card_number_wrong_length"),
        (
            {"number": "4242424242424241"},
            "payment.card_number",
            "payment_card_number_bad_check_digit",
        ),
        ({"expiry_month": 0}, "payment.expiry", "expiry_month_invalid"),
        ({"expiry_month": 13}, "payment.expiry", "expiry_month_invalid"),
        ({"expiry_year": -1}, "payment.expiry", "expiry_year_invalid"),
        ({"expiry_year": 202}, "payment.expiry", "expiry_year_invalid"),
        ({"expiry_year": 1999}, "payment.expiry", "expiry_year_invalid"),
        ({"expiry_year": 2047}, "payment.expiry", "expiry_year_invalid"),
        ({"expiry_month": 10, "expiry_year": 2026}, "payment.expiry", "payment_card_expired"),
        ({"expiry_month": 12, "expiry_year": 25}, "payment.expiry", "payment_card_expired"),
        ({"cvc": "12a"}, "payment.cvc", "cvc_invalid_characters"),
        ({"cvc": "1 2 3"}, "payment.cvc", "cvc_invalid_characters"),
        ({"cvc": ""}, "payment.cvc", "cvc_wrong_length"),
        ({"cvc": "12"}, "payment.cvc", "cvc_wrong_length"),
        ({"cvc": "1234"}, "payment.cvc", "cvc_wrong_length"),
    ],
)
def test_each_bad_field_has_its_own_code(changes: dict[str, Any], field: str, code: str) -> None:
    assert problems_of(details=dataclasses.replace(GOOD, **changes)) == {field: code}


@pytest.mark.parametrize(
    ("holder_name_required", "holder_name", "code"),
    [
        (True, None, "holder_name_missing"),
        (True, "   ", "holder_name_missing"),
        (True, "TAN\x00AH KOW", "holder_name_invalid"),
        (False, "TAN\u200bAH KOW", "holder_name_invalid"),
        (True, "A" * 27, "holder_name_invalid"),
    ],
)
def test_a_bad_holder_name_has_its_own_code(
    holder_name_required: bool, holder_name: str | None, code: str
) -> None:
    problems = problems_of(holder_name_required=holder_name_required, holder_name=holder_name)

    assert problems == {"payment.holder_name": code}


@pytest.mark.parametrize(
    "holder_name", [None, "", "A" * 26, "  SITI NURHALIZA BT TARUDIN  ", "JOSÉ Ñ O'NEIL-LI"]
)
def test_a_holder_name_that_is_not_required_may_be_left_out_or_given(
    holder_name: str | None,
) -> None:
    check(holder_name_required=False, holder_name=holder_name)


@pytest.mark.parametrize(
    "number", ["4242 4242 4242 4242", "4242-4242-4242-4242", "４２４２ ４２４２ ４２４２ ４２４２"]
)
def test_spaces_dashes_and_full_width_digits_in_the_number_are_fine(number: str) -> None:
    check(dataclasses.replace(GOOD, number=number))


def test_a_card_is_valid_through_the_last_day_of_its_expiry_month() -> None:
    details = dataclasses.replace(GOOD, expiry_month=11, expiry_year=26)

    check(details, today=dt.date(2026, 11, 30))
    assert problems_of(details=details, today=dt.date(2026, 12, 1)) == {
        "payment.expiry": "payment_card_expired"
    }


def test_several_bad_fields_give_one_problem_per_field() -> None:
    details = PaymentCardDetails(
        number="4242424242424241", expiry_month=13, expiry_year=2020, cvc="1"
    )

    with pytest.raises(PaymentCardDetailsInvalid) as caught:
        check(details, holder_name_required=True, holder_name=None)

    error = caught.value
    assert error.code == "card_details_invalid"
    assert error.retryable is False
    assert [(problem.field, problem.code) for problem in error.problems] == [
        ("payment.card_number", "payment_card_number_bad_check_digit"),
        ("payment.expiry", "expiry_month_invalid"),
        ("payment.cvc", "cvc_wrong_length"),
        ("payment.holder_name", "holder_name_missing"),
    ]
    assert all(type(problem) is InputError for problem in error.problems)
    assert all(problem.message in error.message for problem in error.problems)


def test_the_tables_brand_decides_the_lengths_and_the_cvc() -> None:
    # A number the table calls Amex is checked as Amex even if the fallback would not say so.
    details = PaymentCardDetails(
        number=with_luhn("99" + "1" * 12), expiry_month=1, expiry_year=30, cvc="123"
    )

    assert problems_of(details=details, facts=AMEX) == {"payment.cvc": "cvc_wrong_length"}


@pytest.mark.parametrize(
    ("changes", "params"),
    [
        ({"number": "4242 4242 4242 424O"}, {"character": "O"}),
        (
            {"number": "424242424242424"},
            {"brand": "visa", "brand_name": "Visa", "lengths": "13, 16 or 19", "length": "15"},
        ),
        (
            {"number": "99999999999"},
            {"brand": "unknown", "brand_name": "", "lengths": "12 to 19", "length": "11"},
        ),
        ({"expiry_year": 1999}, {"example_short": "26", "example_long": "2026"}),
        ({"expiry_month": 3, "expiry_year": 2024}, {"expiry": "03/24"}),
        ({"cvc": "12"}, {"digits": "3", "brand": "visa"}),
    ],
)
def test_problems_carry_their_dynamic_values_for_translations(
    changes: dict[str, Any], params: dict[str, str]
) -> None:
    with pytest.raises(PaymentCardDetailsInvalid) as caught:
        check(dataclasses.replace(GOOD, **changes))

    (problem,) = caught.value.problems
    assert problem.params == params
    assert all(
        value in problem.message
        for value in params.values()
        if value not in {"visa", "unknown", ""}
    )


def test_a_long_holder_name_says_the_limit() -> None:
    with pytest.raises(PaymentCardDetailsInvalid) as caught:
        check(holder_name="A" * 27)

    assert caught.value.problems[0].params == {"maximum": "26"}
    assert caught.value.params == {"fields": "payment.holder_name"}


def test_problem_messages_never_repeat_the_card_number() -> None:
    details = dataclasses.replace(GOOD, number="4242424242424241", cvc="98")

    with pytest.raises(PaymentCardDetailsInvalid) as caught:
        check(details)

    assert "4242424242424241" not in str(caught.value)
    assert "98" not in caught.value.message


# --- properties -----------------------------------------------------------------------------

_PREFIXES = [
    "4",
    "34",
    "37",
    "51",
    "55",
    "2221",
    "2720",
    "3528",
    "6011",
    "62",
    "644",
    "65",
    "9",
    "1",
]


@st.composite
def valid_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of a length its brand allows."""
    prefix = draw(st.sampled_from(_PREFIXES) | st.text("0123456789", min_size=1, max_size=4))
    length = draw(st.sampled_from(sorted(LENGTHS[brand_from_digits(prefix)])))
    body_length = length - len(prefix) - 1
    body = draw(st.text("0123456789", min_size=body_length, max_size=body_length))
    number = with_luhn(prefix + body)
    # A short prefix ("3") may turn out to be another brand's ("3530...") once the body is drawn.
    assume(len(number) in LENGTHS[brand_from_digits(number)])
    return number


@given(number=valid_numbers())
def test_a_luhn_valid_number_of_a_length_its_brand_allows_passes(number: str) -> None:
    brand = brand_from_digits(number)
    cvc = "1234" if brand is CardBrand.AMEX else "123"

    check(dataclasses.replace(GOOD, number=number, cvc=cvc), facts=CardFacts(brand=brand))


@given(number=valid_numbers(), data=st.data())
def test_changing_any_single_digit_of_a_valid_number_is_caught(
    number: str, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(number) - 1))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    changed = number[:position] + digit + number[position + 1 :]
    details = dataclasses.replace(
        GOOD, number=changed, cvc="1234" if changed[:2] in {"34", "37"} else "123"
    )

    problems = problems_of(details=details)

    if brand_from_digits(changed) is brand_from_digits(number):
        assert problems == {"payment.card_number": "payment_card_number_bad_check_digit"}
    else:  # the change named another brand, whose lengths may not fit
        assert set(problems) == {"payment.card_number"}


@given(today=st.dates(min_value=dt.date(2001, 1, 1), max_value=dt.date(2090, 12, 31)))
def test_the_current_month_is_accepted_and_last_month_is_refused(today: dt.date) -> None:
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)

    for year in (today.year, today.year % 100):
        check(dataclasses.replace(GOOD, expiry_month=today.month, expiry_year=year), today=today)
    for year in (last_month.year, last_month.year % 100):
        expired = dataclasses.replace(GOOD, expiry_month=last_month.month, expiry_year=year)
        assert problems_of(details=expired, today=today) == {
            "payment.expiry": "payment_card_expired"
        }


@given(brand=st.sampled_from(list(CardBrand)), cvc=st.text("0123456789", max_size=6))
def test_the_cvc_has_three_digits_and_four_for_amex(brand: CardBrand, cvc: str) -> None:
    expected_digits = 4 if brand is CardBrand.AMEX else 3
    details = GOOD_AMEX if brand is CardBrand.AMEX else GOOD

    if len(cvc) == expected_digits:
        check(dataclasses.replace(details, cvc=cvc), facts=CardFacts(brand=brand))
    else:
        problems = problems_of(
            details=dataclasses.replace(details, cvc=cvc), facts=CardFacts(brand=brand)
        )
        assert problems == {"payment.cvc": "cvc_wrong_length"}


# --- method and issuer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "funding", "code"),
    [
        ("credit_card", CardFunding.DEBIT, "card_is_debit"),
        ("credit_card", CardFunding.PREPAID, "card_is_debit"),
        ("debit_card", CardFunding.CREDIT, "card_is_credit"),
    ],
)
def test_a_card_paid_under_the_other_method_is_reported(
    method: str, funding: CardFunding, code: str
) -> None:
    with pytest.raises(InputError) as caught:
        check_method_matches(method, CardFacts(brand=CardBrand.VISA, funding=funding))

    assert caught.value.code == code
    assert caught.value.field == "payment.method"


@pytest.mark.parametrize(
    ("method", "funding"),
    [
        ("credit_card", CardFunding.CREDIT),
        ("credit_card", CardFunding.UNKNOWN),
        ("debit_card", CardFunding.DEBIT),
        ("debit_card", CardFunding.PREPAID),
        ("debit_card", CardFunding.UNKNOWN),
        ("ewallet:grabpay", CardFunding.CREDIT),
    ],
)
def test_a_card_paid_under_its_own_method_or_of_unknown_funding_passes(
    method: str, funding: CardFunding
) -> None:
    check_method_matches(method, CardFacts(brand=CardBrand.VISA, funding=funding))


def test_a_foreign_card_whose_issuer_refuses_payments_abroad_is_refused() -> None:
    facts = CardFacts(brand=CardBrand.VISA, issuer_country="US", international_payments=False)

    with pytest.raises(PaymentError) as caught:
        check_international(facts, "MY")

    assert caught.value.code == "international_payments_not_allowed"
    assert caught.value.retryable is False
    assert "e-wallet" in caught.value.message


@pytest.mark.parametrize(
    ("issuer_country", "international_payments"),
    [("MY", False), ("US", True), ("US", None), ("", False)],
)
def test_a_card_of_the_operators_country_or_unknown_rules_passes(
    issuer_country: str, international_payments: bool | None
) -> None:
    facts = CardFacts(
        brand=CardBrand.VISA,
        issuer_country=issuer_country,
        international_payments=international_payments,
    )

    check_international(facts, "MY")
    check_international(facts, "my")


def test_an_operator_country_that_is_not_a_country_code_is_a_bug() -> None:
    with pytest.raises(InvariantError):
        check_international(CardFacts(), "Malaysia")
