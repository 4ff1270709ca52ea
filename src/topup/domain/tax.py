"""Tax on an invoice, in integer minor units: the rates the operator profile defines (``[tax]``)
and whether its prices include them.

Rounding rule: tax is computed once per rate on the invoice's total (not per line), and each
amount is rounded to the nearest minor unit, halves away from zero ("round half up" for the
positive amounts of an invoice). When prices include tax, the net is rounded first and the tax
is what is left (gross - net), split over the rates in the profile's order, the last rate taking
what rounding left over: the parts always add up to the price paid, to the minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from topup.domain.errors import InputError, InvariantError
from topup.domain.money import Money

BASIS_POINTS_PER_WHOLE = 10_000  # 1 basis point = 0.01 %
TAX_RATE_PERCENT_MAX = 100
TAX_RATES_MAX = 5
TAX_NAME_LENGTH_MAX = 20


@dataclass(frozen=True, slots=True)
class TaxRate:
    name: str  # as printed, e.g. "SST", "PPN"
    basis_points: int  # 800 = 8 %

    @property
    def percent_text(self) -> str:
        whole, part = divmod(self.basis_points, 100)
        return f"{whole}" if part == 0 else f"{whole}.{part:02d}".rstrip("0")


@dataclass(frozen=True, slots=True)
class TaxRule:
    rates: tuple[TaxRate, ...]
    prices_include_tax: bool


@dataclass(frozen=True, slots=True)
class TaxedAmount:
    net: Money
    taxes: tuple[tuple[TaxRate, Money], ...]
    gross: Money

    @property
    def tax(self) -> Money:
        return self.gross - self.net


NO_TAX = TaxRule(rates=(), prices_include_tax=True)


def divide_rounded(numerator: int, denominator: int) -> int:
    """numerator / denominator to the nearest integer, halves away from zero."""
    if denominator <= 0:
        raise InvariantError("rounding a division by a non-positive number")
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def apply_tax(amount: Money, rule: TaxRule) -> TaxedAmount:
    """Net, each rate's tax and gross of ``amount`` (what the lines' prices add up to)."""
    if not rule.rates:
        return TaxedAmount(net=amount, taxes=(), gross=amount)
    currency = amount.currency
    if not rule.prices_include_tax:
        parts = [
            (rate, divide_rounded(amount.minor * rate.basis_points, BASIS_POINTS_PER_WHOLE))
            for rate in rule.rates
        ]
        gross = amount.minor + sum(part for _, part in parts)
        return TaxedAmount(
            net=amount,
            taxes=tuple((rate, Money(part, currency)) for rate, part in parts),
            gross=Money(gross, currency),
        )
    total_points = sum(rate.basis_points for rate in rule.rates)
    net = divide_rounded(
        amount.minor * BASIS_POINTS_PER_WHOLE, BASIS_POINTS_PER_WHOLE + total_points
    )
    left = amount.minor - net
    shares: list[tuple[TaxRate, Money]] = []
    for index, rate in enumerate(rule.rates):
        if index == len(rule.rates) - 1:
            part = left
        else:
            part = divide_rounded(net * rate.basis_points, BASIS_POINTS_PER_WHOLE)
            left -= part
        shares.append((rate, Money(part, currency)))
    return TaxedAmount(net=Money(net, currency), taxes=tuple(shares), gross=amount)


def _invalid(field: str, problem: str) -> InputError:
    return InputError(
        f"profile field {field!r} {problem}",
        code="invalid_profile",
        field=field,
        params={"detail": f"field {field!r} {problem}"},
    )


def percent_to_basis_points(value: object, field: str) -> int:
    """A rate as the profile writes it: a whole number (8) or a text with at most two decimals
    ("8", "11.5"); never a TOML float (money is never a float)."""
    if type(value) is int:
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise _invalid(
            field, f'must be a whole number or a text like "8.25", got {type(value).__name__}'
        )
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise _invalid(field, f"is not a percentage: {text!r}") from None
    if not number.is_finite() or number.as_tuple().exponent < -2:  # type: ignore[operator]
        raise _invalid(field, f"must have at most two decimals, got {text!r}")
    if not 0 <= number <= TAX_RATE_PERCENT_MAX:
        raise _invalid(field, f"must be between 0 and {TAX_RATE_PERCENT_MAX} %, got {text}")
    return int(number * 100)


def tax_rule_from_table(value: object) -> TaxRule:
    """``[tax]``: ``prices_include_tax = true|false`` and ``[tax.rates]`` name = percent."""
    if not isinstance(value, dict):
        raise _invalid("tax", "must be a table with prices_include_tax and rates")
    for name in value:
        if name not in ("prices_include_tax", "rates"):
            raise _invalid(
                f"tax.{name}", "is not a tax field (known fields: prices_include_tax, rates)"
            )
    include = value.get("prices_include_tax")
    if not isinstance(include, bool):
        raise _invalid("tax.prices_include_tax", "must be true or false")
    rates_table = value.get("rates", {})
    if not isinstance(rates_table, dict):
        raise _invalid("tax.rates", "must be a table of name = percent")
    if len(rates_table) > TAX_RATES_MAX:
        raise _invalid("tax.rates", f"names at most {TAX_RATES_MAX} rates")
    rates = []
    for name, percent in rates_table.items():
        field = f"tax.rates.{name}"
        if not name.strip() or len(name) > TAX_NAME_LENGTH_MAX:
            raise _invalid(field, f"must be named with 1 to {TAX_NAME_LENGTH_MAX} characters")
        rates.append(TaxRate(name=name, basis_points=percent_to_basis_points(percent, field)))
    return TaxRule(rates=tuple(rates), prices_include_tax=include)
