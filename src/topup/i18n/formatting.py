"""Money, numbers, dates, times and relative times as each locale writes them (Babel, CLDR).

Money comes as integer minor units with its currency (``Money``) and is shown with the currency's
digits; moments come as aware ``datetime`` and are shown in the operator's time zone (the
profile's ``time_zone``), never the server's. No clock is read here: a relative time is from a
``now`` the caller passes.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.dates import format_time as babel_format_time
from babel.dates import format_timedelta
from babel.numbers import format_currency, format_decimal

from topup.domain.errors import InvariantError
from topup.domain.money import Money, minor_unit_digits
from topup.i18n.locales import resolve_or_default

Width = Literal["short", "medium", "long", "full"]
RELATIVE_THRESHOLD = 0.85  # Babel's: 50 minutes read "in 1 hour", 40 minutes "in 40 minutes"


def babel_locale(locale: str) -> Locale:
    """The Babel locale of one of LOCALES, or of the one ``locale`` falls back to."""
    return _parsed(resolve_or_default(locale))


@functools.cache  # one per locale of LOCALES, whatever callers pass
def _parsed(chosen: str) -> Locale:
    return Locale.parse(chosen)


def _zone(time_zone: str) -> ZoneInfo:
    return ZoneInfo(time_zone)


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise InvariantError("a moment to show must be timezone-aware")
    return moment


def format_money(amount: Money, locale: str) -> str:
    """``MYR10.00``, ``RM10.00`` (ms), ``Rp50.000,00`` (id): the currency's digits, the locale's
    separators and symbol."""
    return _formatted_money(amount.minor, amount.currency, resolve_or_default(locale))


@functools.lru_cache(maxsize=4096)  # a page shows the same few prices again and again
def _formatted_money(minor: int, currency: str, chosen: str) -> str:
    value = Decimal(minor).scaleb(-minor_unit_digits(currency))
    return format_currency(value, currency, locale=babel_locale(chosen))


def format_number(value: int | Decimal, locale: str) -> str:
    """``1,234,567`` (en), ``1.234.567`` (id)."""
    return format_decimal(value, locale=babel_locale(locale))


def format_datetime(
    moment: dt.datetime, locale: str, *, time_zone: str, width: Width = "medium"
) -> str:
    """A moment in the operator's time zone: ``Nov 25, 2026, 4:00:00 PM`` (en, medium)."""
    return babel_format_datetime(
        _aware(moment), width, tzinfo=_zone(time_zone), locale=babel_locale(locale)
    )


def format_date(
    day: dt.date | dt.datetime,
    locale: str,
    *,
    time_zone: str | None = None,
    width: Width = "medium",
) -> str:
    """A day (``25 Nov 2026`` in ms); a moment is first brought to ``time_zone``."""
    if isinstance(day, dt.datetime):
        if time_zone is None:
            raise InvariantError("a moment shown as a day needs the operator's time zone")
        day = _aware(day).astimezone(_zone(time_zone)).date()
    return babel_format_date(day, width, locale=babel_locale(locale))


def format_time(moment: dt.datetime, locale: str, *, time_zone: str, width: Width = "short") -> str:
    """The time of day of a moment in the operator's time zone (``16:00``, ``4:00 PM``)."""
    return babel_format_time(
        _aware(moment), width, tzinfo=_zone(time_zone), locale=babel_locale(locale)
    )


def format_duration(duration: dt.timedelta, locale: str) -> str:
    """A length of time, rounded to its largest unit: ``5 minutes``, ``5分钟``."""
    return format_timedelta(
        duration, threshold=RELATIVE_THRESHOLD, format="long", locale=babel_locale(locale)
    )


def format_relative(moment: dt.datetime, locale: str, *, now: dt.datetime) -> str:
    """``in 5 minutes`` / ``5 minutes ago`` (``5分钟后``, ``dalam 5 minit``) from ``now``."""
    return format_timedelta(
        _aware(moment) - _aware(now),
        threshold=RELATIVE_THRESHOLD,
        add_direction=True,
        format="long",
        locale=babel_locale(locale),
    )
