"""The IIN table: what the leading digits of a payment card say about its brand, funding and issuer.

The shipped table is ``topup/data/iin.csv`` with the columns

    prefix_from,prefix_to,brand,funding,issuer_country,international_payments,note

A row covers every card whose leading ``len(prefix_from)`` digits lie between ``prefix_from`` and
``prefix_to`` (both of the same length, 1 to 19 digits). When several rows cover a card, the
longest prefix wins; rows of the same length never overlap. ``international_payments`` is
``true``, ``false`` or empty (unknown). It holds the sandbox's test numbers (whole numbers, so the
longest prefix is a whole number), clearly marked sample ranges (``note=sample``: not real bank
ranges) and one fallback row per brand.

Loading checks the whole file; a bad row is an ``IinTableError`` naming its line. The table
reads only a card's leading digits and keeps nothing of any number it is asked about.
"""

from __future__ import annotations

import bisect
import csv
import functools
import importlib.resources
import io
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from topup.domain.errors import InputError
from topup.domain.payment_card import (
    UNKNOWN_CARD_FACTS,
    CardBrand,
    CardFacts,
    CardFunding,
    brand_from_digits,
    payment_card_digits_max,
)

iin_table_size_max_bytes = 1024 * 1024
iin_table_rows_max = 10_000
COLUMNS = (
    "prefix_from",
    "prefix_to",
    "brand",
    "funding",
    "issuer_country",
    "international_payments",
    "note",
)
_BRANDS = {brand.value: brand for brand in CardBrand if brand is not CardBrand.UNKNOWN}
_FUNDINGS = {funding.value: funding for funding in CardFunding}
_BRAND_DIGITS = 4  # brand_from_digits needs at most this many leading digits
_INTERNATIONAL = {"": None, "true": True, "false": False}


class IinTableError(InputError):
    code = "iin_table_invalid"


@dataclass(frozen=True, slots=True)
class IinRange:
    """One row of the table; ``line`` is its line in the file (0 when built in code)."""

    prefix_from: str
    prefix_to: str
    facts: CardFacts
    note: str = ""
    line: int = 0


class IinTable:
    """Facts about payment cards by their leading digits; the longest matching prefix wins."""

    def __init__(self, ranges: Iterable[IinRange]) -> None:
        by_length: dict[int, list[IinRange]] = {}
        for iin_range in ranges:
            _check_range(iin_range)
            by_length.setdefault(len(iin_range.prefix_from), []).append(iin_range)
        self._lengths = sorted(by_length, reverse=True)
        # Digits to read from a number: the longest prefix, and enough to name a brand.
        self._leading_digits_max = max([*self._lengths, _BRAND_DIGITS])
        self._ranges: dict[int, list[IinRange]] = {}
        self._starts: dict[int, list[str]] = {}
        for length, group in by_length.items():
            group.sort(key=lambda iin_range: iin_range.prefix_from)
            for previous, current in itertools.pairwise(group):
                if current.prefix_from <= previous.prefix_to:
                    raise _invalid(
                        current.line,
                        f"range {current.prefix_from}-{current.prefix_to} overlaps "
                        f"{previous.prefix_from}-{previous.prefix_to} (line {previous.line})",
                    )
            self._ranges[length] = group
            self._starts[length] = [iin_range.prefix_from for iin_range in group]

    @classmethod
    def from_csv(cls, text: str) -> IinTable:
        if len(text.encode("utf-8")) > iin_table_size_max_bytes:
            raise _invalid(0, f"the table is larger than {iin_table_size_max_bytes} bytes")
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None or tuple(column.strip() for column in header) != COLUMNS:
            raise _invalid(1, f"the header must be {','.join(COLUMNS)}")
        ranges: list[IinRange] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(ranges) >= iin_table_rows_max:
                raise _invalid(reader.line_num, f"more than {iin_table_rows_max} rows")
            ranges.append(_parse_row(row, reader.line_num))
        return cls(ranges)

    def __len__(self) -> int:
        return sum(len(group) for group in self._ranges.values())

    def facts_for(self, card_number_digits: str) -> CardFacts:
        """Facts for a card from its leading digits; unknown ranges give the brand at most."""
        leading = _leading_digits(card_number_digits, self._leading_digits_max)
        for length in self._lengths:
            if length > len(leading):
                continue
            prefix = leading[:length]
            index = bisect.bisect_right(self._starts[length], prefix) - 1
            if index >= 0 and prefix <= self._ranges[length][index].prefix_to:
                return self._ranges[length][index].facts
        brand = brand_from_digits(leading)
        return CardFacts(brand=brand) if brand is not CardBrand.UNKNOWN else UNKNOWN_CARD_FACTS


@functools.cache
def shipped_iin_table() -> IinTable:
    """The table shipped in ``topup/data/iin.csv``, read and checked on first use only."""
    resource = importlib.resources.files("topup").joinpath("data", "iin.csv")
    return IinTable.from_csv(resource.read_text(encoding="utf-8"))


def _leading_digits(text: str, count: int) -> str:
    """The leading ASCII digits of ``text``, at most ``count`` of them."""
    head = text[:count]
    if head.isascii() and head.isdigit():  # the usual case
        return head
    leading = []
    for character in text[:count]:
        if not (character.isascii() and character.isdigit()):
            break
        leading.append(character)
    return "".join(leading)


def _parse_row(row: list[str], line: int) -> IinRange:
    if len(row) != len(COLUMNS):
        raise _invalid(line, f"expected {len(COLUMNS)} columns, found {len(row)}")
    prefix_from, prefix_to, brand, funding, country, international, note = (
        cell.strip() for cell in row
    )
    if brand not in _BRANDS:
        raise _invalid(line, f"unknown brand {brand!r}; known: {', '.join(sorted(_BRANDS))}")
    if funding not in _FUNDINGS:
        raise _invalid(line, f"unknown funding {funding!r}; known: {', '.join(sorted(_FUNDINGS))}")
    if international not in _INTERNATIONAL:
        raise _invalid(
            line, f"international_payments is true, false or empty, not {international!r}"
        )
    if country and not (len(country) == 2 and country.isascii() and country.isalpha()):
        raise _invalid(line, f"issuer_country is an ISO alpha-2 code or empty, not {country!r}")
    facts = CardFacts(
        brand=_BRANDS[brand],
        funding=_FUNDINGS[funding],
        issuer_country=country.upper(),
        international_payments=_INTERNATIONAL[international],
    )
    return IinRange(prefix_from, prefix_to, facts, note, line)


def _check_range(iin_range: IinRange) -> None:
    start, end, line = iin_range.prefix_from, iin_range.prefix_to, iin_range.line
    for prefix in (start, end):
        if not (prefix.isascii() and prefix.isdigit() and len(prefix) <= payment_card_digits_max):
            raise _invalid(
                line, f"a prefix is 1 to {payment_card_digits_max} digits, not {prefix!r}"
            )
    if len(start) != len(end):
        raise _invalid(line, f"prefix_from {start} and prefix_to {end} differ in length")
    if start > end:
        raise _invalid(line, f"prefix_from {start} comes after prefix_to {end}")
    brand = iin_range.facts.brand
    if brand is CardBrand.UNKNOWN:
        raise _invalid(line, "a row names the brand it is for")
    for prefix in (start, end):
        # The brand the leading digits already name must agree (a pair check with the domain).
        named = brand_from_digits(prefix)
        if named is not CardBrand.UNKNOWN and named is not brand:
            raise _invalid(line, f"prefix {prefix} belongs to {named.value}, not {brand.value}")


def _invalid(line: int, problem: str) -> IinTableError:
    where = f"IIN table line {line}" if line else "IIN table"
    return IinTableError(f"{where}: {problem}", field="iin_table")
