from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup.domain.errors import InputError, InvariantError
from topup.domain.money import Money, minor_unit_digits

CURRENCIES = ["MYR", "IDR", "SGD", "USD", "JPY", "KRW", "BHD", "KWD"]

currencies = st.sampled_from(CURRENCIES)
minor_units = st.integers(min_value=-(10**15), max_value=10**15)


def money_in(currency: str) -> st.SearchStrategy[Money]:
    return minor_units.map(lambda minor: Money(minor, currency))


@st.composite
def same_currency_triples(draw: st.DrawFn) -> tuple[Money, Money, Money]:
    currency = draw(currencies)
    amounts = money_in(currency)
    return draw(amounts), draw(amounts), draw(amounts)


@given(triple=same_currency_triples())
def test_addition_is_associative_and_commutative(triple: tuple[Money, Money, Money]) -> None:
    a, b, c = triple

    assert (a + b) + c == a + (b + c)
    assert a + b == b + a


@given(amount=currencies.flatmap(money_in))
def test_an_amount_plus_its_negation_is_zero(amount: Money) -> None:
    assert amount + (-amount) == Money.zero(amount.currency)
    assert (amount - amount).is_zero


@given(amount=currencies.flatmap(money_in))
def test_parsing_the_decimal_text_gives_back_the_same_amount(amount: Money) -> None:
    assert Money.parse(amount.decimal_text(), amount.currency) == amount


@given(
    first=st.sampled_from(["MYR", "IDR"]),
    minor=minor_units,
    other_minor=minor_units,
)
def test_mixing_currencies_is_a_bug(first: str, minor: int, other_minor: int) -> None:
    second = "IDR" if first == "MYR" else "MYR"
    a, b = Money(minor, first), Money(other_minor, second)

    with pytest.raises(InvariantError):
        a + b
    with pytest.raises(InvariantError):
        a - b
    with pytest.raises(InvariantError):
        _ = a < b


@given(minor=st.floats(allow_nan=True, allow_infinity=True), currency=currencies)
def test_float_minor_units_are_a_bug(minor: float, currency: str) -> None:
    with pytest.raises(InvariantError):
        Money(minor, currency)  # type: ignore[arg-type]


@given(
    currency=currencies,
    whole=st.integers(min_value=0, max_value=10**9),
    extra_digits=st.integers(min_value=1, max_value=4),
    data=st.data(),
)
def test_parse_rejects_more_fraction_digits_than_the_currency_has(
    currency: str, whole: int, extra_digits: int, data: st.DataObject
) -> None:
    fraction_length = minor_unit_digits(currency) + extra_digits
    fraction = data.draw(
        st.text(alphabet="0123456789", min_size=fraction_length, max_size=fraction_length)
    )

    with pytest.raises(InputError) as caught:
        Money.parse(f"{whole}.{fraction}", currency)
    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "MYR", 1250),
        ("12.5", "MYR", 1250),
        ("-0.05", "MYR", -5),
        ("500", "JPY", 500),
        ("1.234", "BHD", 1234),
        ("15000", "IDR", 1500000),
    ],
)
def test_parse_reads_decimal_text_exactly(text: str, currency: str, minor: int) -> None:
    assert Money.parse(text, currency) == Money(minor, currency)
