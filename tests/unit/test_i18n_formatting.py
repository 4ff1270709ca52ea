"""Babel formatting per locale: money from integer minor units with the currency's digits,
numbers, moments in the operator's time zone, and relative times from a given now."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from topup import i18n
from topup.domain.errors import InvariantError
from topup.domain.money import Money

PAID_AT = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
KUALA_LUMPUR = "Asia/Kuala_Lumpur"


@pytest.mark.parametrize(
    ("locale", "amount", "text"),
    [("en", Money(1000, "MYR"), "MYR10.00"), ("ms", Money(1000, "MYR"), "RM10.00"),
     ("zh_Hans", Money(1050, "MYR"), "MYR10.50"), ("id", Money(5_000_000, "IDR"), "Rp50.000,00"),
     ("en", Money(1500, "JPY"), "¥1,500"), ("en", Money(-250, "MYR"), "-MYR2.50")],
)  # fmt: skip
def test_money_is_written_with_the_currencys_digits_in_the_locales_way(
    locale: str, amount: Money, text: str
) -> None:
    assert i18n.format_money(amount, locale) == text


def test_numbers_use_the_locales_separators() -> None:
    assert i18n.format_number(1234567, "en") == "1,234,567"
    assert i18n.format_number(1234567, "id") == "1.234.567"
    assert i18n.format_number(Decimal("0.5"), "id") == "0,5"


def test_a_moment_is_shown_in_the_operators_time_zone() -> None:
    # CLDR puts a narrow no-break space (U+202F) before AM/PM.
    assert (
        i18n.format_datetime(PAID_AT, "en", time_zone=KUALA_LUMPUR)
        == "Nov 25, 2026, 4:00:00\u202fPM"
    )
    assert i18n.format_datetime(PAID_AT, "zh_Hans", time_zone=KUALA_LUMPUR).endswith("16:00:00")
    assert i18n.format_time(PAID_AT, "id", time_zone="Asia/Jakarta") == "15.00"
    late = dt.datetime(2026, 11, 25, 17, 0, tzinfo=dt.UTC)  # already the 26th in Kuala Lumpur
    assert i18n.format_date(late, "ms", time_zone=KUALA_LUMPUR) == "26 Nov 2026"
    assert i18n.format_date(dt.date(2026, 11, 25), "en") == "Nov 25, 2026"


def test_a_moment_without_a_time_zone_is_refused() -> None:
    with pytest.raises(InvariantError):
        i18n.format_datetime(dt.datetime(2026, 11, 25, 8, 0), "en", time_zone=KUALA_LUMPUR)
    with pytest.raises(InvariantError):
        i18n.format_date(PAID_AT, "en")


@pytest.mark.parametrize(
    ("locale", "later", "earlier"),
    [("en", "in 5 minutes", "5 minutes ago"), ("zh_Hans", "5分钟后", "5分钟前"),
     ("ms", "dalam 5 minit", "5 minit lalu"), ("id", "dalam 5 menit", "5 menit yang lalu")],
)  # fmt: skip
def test_relative_times_read_naturally_in_each_language(
    locale: str, later: str, earlier: str
) -> None:
    five_minutes = dt.timedelta(minutes=5)
    assert i18n.format_relative(PAID_AT + five_minutes, locale, now=PAID_AT) == later
    assert i18n.format_relative(PAID_AT - five_minutes, locale, now=PAID_AT) == earlier


def test_a_duration_is_rounded_to_its_largest_unit() -> None:
    assert i18n.format_duration(dt.timedelta(hours=2, minutes=5), "en") == "2 hours"
    assert i18n.format_duration(dt.timedelta(minutes=5), "zh_Hans") == "5分钟"
