"""The shipped IIN table knows every sandbox card, and the longest matching prefix wins."""

from __future__ import annotations

import csv
import importlib.resources
import io

import pytest

from topup.adapters.gateways.sandbox import (
    _SANDBOX_CARDS,
    CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED,
)
from topup.adapters.iin_table import IinTable, IinTableError, shipped_iin_table
from topup.domain.card_number import luhn_is_valid
from topup.domain.errors import InputError, PaymentError
from topup.domain.payment_card import (
    CardBrand,
    CardFacts,
    CardFunding,
    brand_from_digits,
    check_international,
    check_method_matches,
)

HEADER = "prefix_from,prefix_to,brand,funding,issuer_country,international_payments,note\n"


def shipped_rows() -> list[dict[str, str]]:
    text = importlib.resources.files("topup").joinpath("data", "iin.csv").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def table(*rows: str) -> IinTable:
    return IinTable.from_csv(HEADER + "".join(row + "\n" for row in rows))


def test_the_shipped_table_validates_and_is_read_once() -> None:
    assert len(shipped_iin_table()) == len(shipped_rows())
    assert shipped_iin_table() is shipped_iin_table()


@pytest.mark.parametrize("number", sorted(_SANDBOX_CARDS))
def test_every_sandbox_card_has_a_known_brand_and_the_sandboxs_funding_and_country(
    number: str,
) -> None:
    facts = shipped_iin_table().facts_for(number)

    assert facts.brand is not CardBrand.UNKNOWN
    assert facts.funding == _SANDBOX_CARDS[number].funding
    assert facts.issuer_country == _SANDBOX_CARDS[number].issuer_country


@pytest.mark.parametrize(
    ("number", "brand", "funding", "country"),
    [
        ("4242424242424242", "visa", "credit", "US"),
        ("4000056655665556", "visa", "debit", "US"),
        ("5555555555554444", "mastercard", "credit", "US"),
        ("2223003122003222", "mastercard", "credit", "US"),
        ("5200828282828210", "mastercard", "debit", "US"),
        ("5105105105105100", "mastercard", "prepaid", "US"),
        ("378282246310005", "amex", "credit", "US"),
        ("371449635398431", "amex", "credit", "US"),
        ("6011981111111113", "discover", "debit", "US"),
        ("3566002020360505", "jcb", "credit", ""),
        ("6200000000000005", "unionpay", "credit", ""),
        ("6200000000000047", "unionpay", "debit", ""),
        ("6205500000000000004", "unionpay", "credit", ""),
    ],
)
def test_stripe_test_cards_have_their_documented_funding(
    number: str, brand: str, funding: str, country: str
) -> None:
    facts = shipped_iin_table().facts_for(number)

    assert (facts.brand, facts.funding, facts.issuer_country) == (brand, funding, country)


def test_every_whole_test_number_in_the_table_is_luhn_valid() -> None:
    numbers = [row["prefix_from"] for row in shipped_rows() if "test card" in row["note"]]

    assert len(numbers) >= len(_SANDBOX_CARDS)
    assert all(luhn_is_valid(number) for number in numbers)


def test_sample_ranges_are_marked_sample_and_name_malaysia_and_indonesia() -> None:
    samples = [row for row in shipped_rows() if len(row["prefix_from"]) == 8]

    assert {row["note"] for row in samples} == {"sample"}
    assert {(row["issuer_country"], row["funding"]) for row in samples} >= {
        ("MY", "debit"),
        ("MY", "credit"),
        ("ID", "debit"),
        ("ID", "credit"),
    }


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "visa"),
        ("5100000000000000", "mastercard"),
        ("2720990000000000", "mastercard"),
        ("340000000000000", "amex"),
        ("3530111333300000", "jcb"),
        ("6250940000000000", "unionpay"),
        ("6440000000000000", "discover"),
        ("6500000000000000", "discover"),
    ],
)
def test_an_unlisted_number_gets_its_brand_from_the_fallback_rows(number: str, brand: str) -> None:
    assert shipped_iin_table().facts_for(number) == CardFacts(brand=CardBrand(brand))


def test_the_fallback_rows_agree_with_the_brand_the_leading_digits_name() -> None:
    # Every four-digit start, padded with nines to miss the test numbers and sample ranges.
    numbers = [f"{start:04d}" + "9" * 12 for start in range(10_000)]

    disagreeing = [
        number
        for number in numbers
        if shipped_iin_table().facts_for(number).brand is not brand_from_digits(number)
    ]

    assert disagreeing == []


@pytest.mark.parametrize("text", ["", "9999 9999", "abcd", "1234567890123456"])
def test_a_number_the_table_does_not_know_has_unknown_facts(text: str) -> None:
    assert shipped_iin_table().facts_for(text) == CardFacts()


def test_a_table_without_a_brand_row_still_names_the_brand_from_the_leading_digits() -> None:
    facts = table("45800010,45800019,visa,debit,MY,true,sample").facts_for("4111111111111111")

    assert facts == CardFacts(brand=CardBrand.VISA)


def test_the_longest_prefix_wins() -> None:
    iin = table(
        "4,4,visa,unknown,,,brand",
        "424242,424242,visa,credit,US,,six digits",
        "42424299,42424299,visa,debit,MY,false,eight digits",
    )

    assert iin.facts_for("4000000000000002").funding is CardFunding.UNKNOWN
    assert iin.facts_for("4242420000000000").funding is CardFunding.CREDIT
    assert iin.facts_for("4242429900000000") == CardFacts(
        brand=CardBrand.VISA,
        funding=CardFunding.DEBIT,
        issuer_country="MY",
        international_payments=False,
    )


def test_only_the_leading_digits_decide() -> None:
    iin = shipped_iin_table()

    assert iin.facts_for("45800015") == iin.facts_for("4580001512345678")
    assert iin.facts_for("4580001512345678").issuer_country == "MY"


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (["51,55,mastercard,unknown,,,", "55,56,mastercard,unknown,,,"], "overlaps"),
        (["34,34,amex,unknown,,,", "34,34,amex,credit,US,,"], "overlaps"),
        (["4,4,diners,unknown,,,"], "unknown brand"),
        (["4,4,unknown,unknown,,,"], "unknown brand"),
        (["4,4,visa,charge,,,"], "unknown funding"),
        (["4,4,visa,credit,USA,,"], "issuer_country"),
        (["4,4,visa,credit,US,maybe,"], "international_payments"),
        (["41,4,visa,credit,,,"], "differ in length"),
        (["49,41,visa,credit,,,"], "comes after"),
        (["4x,4x,visa,credit,,,"], "prefix"),
        (["51,51,visa,credit,,,"], "belongs to mastercard"),
        (["4,4,visa,credit,,"], "columns"),
    ],
)
def test_a_bad_table_is_refused_with_its_line(rows: list[str], problem: str) -> None:
    with pytest.raises(IinTableError) as caught:
        table(*rows)

    assert caught.value.code == "iin_table_invalid"
    assert problem in caught.value.message
    assert "line " in caught.value.message


def test_a_table_with_the_wrong_header_is_refused() -> None:
    with pytest.raises(IinTableError, match="header"):
        IinTable.from_csv("from,to,brand\n4,4,visa\n")


# --- method and issuer, with the shipped table ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "number", "code"),
    [
        ("credit_card", "4000056655665556", "card_is_debit"),
        ("credit_card", "5105105105105100", "card_is_debit"),
        ("debit_card", "4242424242424242", "card_is_credit"),
    ],
)
def test_a_card_of_the_other_funding_is_reported(method: str, number: str, code: str) -> None:
    with pytest.raises(InputError) as caught:
        check_method_matches(method, shipped_iin_table().facts_for(number))

    assert caught.value.code == code


@pytest.mark.parametrize(
    ("method", "number"),
    [
        ("credit_card", "4242424242424242"),
        ("debit_card", "5200828282828210"),
        ("debit_card", "4111111111111111"),  # funding unknown
        ("credit_card", "4111111111111111"),
    ],
)
def test_a_card_of_the_right_or_unknown_funding_passes(method: str, number: str) -> None:
    check_method_matches(method, shipped_iin_table().facts_for(number))


@pytest.mark.parametrize("operator_country", ["MY", "ID"])
def test_the_sandbox_card_without_international_payments_is_refused_abroad(
    operator_country: str,
) -> None:
    facts = shipped_iin_table().facts_for(CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED)

    assert facts.issuer_country not in {"MY", "ID"}
    with pytest.raises(PaymentError) as caught:
        check_international(facts, operator_country)
    assert caught.value.code == "international_payments_not_allowed"


def test_the_sandbox_card_without_international_payments_passes_at_home() -> None:
    facts = shipped_iin_table().facts_for(CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED)

    check_international(facts, facts.issuer_country)


def test_an_indonesian_sample_debit_card_is_refused_in_malaysia_and_accepted_in_indonesia() -> None:
    facts = shipped_iin_table().facts_for("4360001500000000")

    with pytest.raises(PaymentError):
        check_international(facts, "MY")
    check_international(facts, "ID")


@pytest.mark.parametrize("number", ["4242424242424242", "4580002500000000", "6200000000000005"])
def test_cards_of_unknown_rules_or_that_allow_payments_abroad_pass(number: str) -> None:
    check_international(shipped_iin_table().facts_for(number), "ID")
