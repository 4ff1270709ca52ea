"""Tax in integer minor units: rates from the profile, rounding halves away from zero, parts
that always add up."""

from __future__ import annotations

import pytest

from topup.adapters.profiles import load_profile
from topup.domain.errors import InputError
from topup.domain.money import Money
from topup.domain.profile_loading import profile_from_toml
from topup.domain.tax import TaxRate, TaxRule, apply_tax, divide_rounded

SST = TaxRate("SST", 800)
PPN = TaxRate("PPN", 1100)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(5, 10, 1), (4, 10, 0), (15, 10, 2), (-5, 10, -1), (-4, 10, 0), (14999, 10000, 1)],
)
def test_division_rounds_halves_away_from_zero(
    numerator: int, denominator: int, expected: int
) -> None:
    assert divide_rounded(numerator, denominator) == expected


def test_tax_added_to_prices_is_rounded_half_up() -> None:
    # 8 % of RM 10.06 is 80.48 sen -> 80; of RM 10.07, 80.56 -> 81; of RM 10.0625... none: sen.
    taxed = apply_tax(Money(1006, "MYR"), TaxRule((SST,), prices_include_tax=False))
    assert (taxed.net.minor, taxed.tax.minor, taxed.gross.minor) == (1006, 80, 1086)
    taxed = apply_tax(Money(1007, "MYR"), TaxRule((SST,), prices_include_tax=False))
    assert taxed.tax.minor == 81
    # Exactly half a sen: 8 % of 6.25 sen... 625 * 8 % = 50.0; 8 % of 1,006.25 is not money.
    taxed = apply_tax(
        Money(1_000_625, "MYR"), TaxRule((TaxRate("X", 1),), prices_include_tax=False)
    )
    assert taxed.tax.minor == 100  # 100.0625 -> 100


def test_tax_included_in_prices_splits_the_price_exactly() -> None:
    # RM 10.00 including 8 %: net 925.925... -> 926, tax 74; together exactly 1000.
    taxed = apply_tax(Money(1000, "MYR"), TaxRule((SST,), prices_include_tax=True))
    assert (taxed.net.minor, taxed.tax.minor, taxed.gross.minor) == (926, 74, 1000)
    # IDR has no minor digits: Rp 25,000 including 11 % PPN -> net 22,522.52 -> 22,523.
    taxed = apply_tax(Money(25_000, "IDR"), TaxRule((PPN,), prices_include_tax=True))
    assert (taxed.net.minor, taxed.tax.minor) == (22_523, 2_477)


@pytest.mark.parametrize("amount", [0, 1, 7, 99, 1000, 123_457, 9_999_999])
def test_several_included_rates_add_up_to_the_price(amount: int) -> None:
    rule = TaxRule((SST, TaxRate("Levy", 250)), prices_include_tax=True)
    taxed = apply_tax(Money(amount, "MYR"), rule)
    assert taxed.net.minor + sum(part.minor for _, part in taxed.taxes) == amount


def test_no_rates_means_no_tax() -> None:
    taxed = apply_tax(Money(1234, "MYR"), TaxRule((), prices_include_tax=False))
    assert (taxed.net.minor, taxed.tax.minor, taxed.taxes) == (1234, 0, ())


def test_the_shipped_profiles_define_sst_and_ppn() -> None:
    malaysia, indonesia = load_profile("my"), load_profile("id")
    assert malaysia.tax.rates == (SST,) and malaysia.tax.prices_include_tax
    assert indonesia.tax.rates == (PPN,) and indonesia.tax.prices_include_tax


BASE = """
code = "xx"
name = "Test"
country = "MY"
currency = "MYR"
phone_region = "MY"
calling_code = 60
time_zone = "Asia/Kuala_Lumpur"
grace_period_days = 30
locales = ["en"]
"""


@pytest.mark.parametrize(
    ("tax", "field"),
    [
        ("[tax]\nrates = { SST = 8 }", "tax.prices_include_tax"),
        ("[tax]\nprices_include_tax = 'yes'", "tax.prices_include_tax"),
        ("[tax]\nprices_include_tax = true\nrates = { SST = 8.5 }", "tax.rates.SST"),
        ("[tax]\nprices_include_tax = true\nrates = { SST = '8.125' }", "tax.rates.SST"),
        ("[tax]\nprices_include_tax = true\nrates = { SST = '101' }", "tax.rates.SST"),
        ("[tax]\nprices_include_tax = true\nrate = 8", "tax.rate"),
    ],
)
def test_a_bad_tax_table_is_refused_naming_its_field(tax: str, field: str) -> None:
    with pytest.raises(InputError) as refused:
        profile_from_toml(BASE + tax)
    assert refused.value.code == "invalid_profile" and refused.value.field == field


def test_a_rate_with_two_decimals_is_read_in_basis_points() -> None:
    profile = profile_from_toml(
        BASE + "[tax]\nprices_include_tax = false\nrates = { VAT = '7.25' }"
    )
    assert profile.tax.rates == (TaxRate("VAT", 725),) and not profile.tax.prices_include_tax
