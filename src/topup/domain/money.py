"""Money: integer minor units with an ISO 4217 currency. No float anywhere."""

from __future__ import annotations

from dataclasses import dataclass

from topup.domain.errors import InputError, InvariantError

# ISO 4217 minor-unit exponents for the currencies our profiles use, plus common ones.
_MINOR_UNIT_DIGITS: dict[str, int] = {
    "MYR": 2,
    "IDR": 2,
    "SGD": 2,
    "USD": 2,
    "EUR": 2,
    "THB": 2,
    "PHP": 2,
    "CNY": 2,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
}


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point in ``currency``; unknown codes are an input error."""
    try:
        return _MINOR_UNIT_DIGITS[currency]
    except KeyError:
        raise InputError(
            f"unknown currency {currency!r}", code="unknown_currency", params={"currency": currency}
        ) from None


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in minor units (sen, cents) of one currency."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:
            raise InvariantError(f"money minor units must be int, got {type(self.minor).__name__}")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise InvariantError(f"currency must be an ISO 4217 code, got {self.currency!r}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse a decimal string such as ``"12.50"`` exactly, without float."""
        digits = minor_unit_digits(currency)
        raw = text.strip()
        negative = raw.startswith("-")
        if negative:
            raw = raw[1:]
        whole, _, fraction = raw.partition(".")
        if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > digits:
            raise InputError(
                f"{text!r} is not an amount in {currency}",
                code="invalid_amount",
                params={"currency": currency},
            )
        minor = int(whole) * 10**digits + int(fraction.ljust(digits, "0") or "0")
        return cls(-minor if negative else minor, currency)

    def _same_currency(self, other: Money) -> None:
        if self.currency != other.currency:
            raise InvariantError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.minor >= other.minor

    def times(self, factor: int) -> Money:
        if type(factor) is not int:
            raise InvariantError("money can only be multiplied by an int")
        return Money(self.minor * factor, self.currency)

    @property
    def is_zero(self) -> bool:
        return self.minor == 0

    def decimal_text(self) -> str:
        """Exact decimal text, e.g. ``"12.50"``; for JSON and CSV, not for people."""
        digits = minor_unit_digits(self.currency)
        sign = "-" if self.minor < 0 else ""
        value = abs(self.minor)
        if digits == 0:
            return f"{sign}{value}"
        return f"{sign}{value // 10**digits}.{value % 10**digits:0{digits}d}"

    def __str__(self) -> str:
        return f"{self.decimal_text()} {self.currency}"
