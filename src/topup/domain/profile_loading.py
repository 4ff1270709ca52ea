"""Build an ``OperatorProfile`` from TOML text, checking every field.

Pure: the caller reads the file (see ``topup.adapters.profiles``). Every problem is an
``InputError`` with code ``invalid_profile`` whose ``field`` and message name the field at fault.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from typing import Any

import phonenumbers

from topup.domain.errors import InputError
from topup.domain.money import minor_unit_digits
from topup.domain.profile import OperatorProfile, SupportContact
from topup.domain.reminders import policy_from_table
from topup.domain.tax import NO_TAX, tax_rule_from_table

grace_period_days_max = 365
postpaid_bill_due_days_max = 90
profile_code_length_max = 32
profile_name_length_max = 200
term_text_length_max = 200
support_phone_length_max = 40
support_email_length_max = 254

_REQUIRED_FIELDS = (
    "code",
    "name",
    "country",
    "currency",
    "phone_region",
    "calling_code",
    "time_zone",
    "grace_period_days",
    "locales",
)
_OPTIONAL_FIELDS = ("terms", "postpaid_bill_due_days", "support", "tax", "reminders")
_SUPPORT_FIELDS = ("phone", "email", "hours")
_PROFILE_CODE = re.compile(r"[a-z][a-z0-9_]*")
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")
# Babel-style locale identifiers: language, optional script, optional territory ("zh_Hans", "en_MY").
_LOCALE = re.compile(r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?(?:_[A-Z]{2})?")
_TERM_WORD = re.compile(r"[a-z][a-z0-9_]*")
_SUPPORT_PHONE = re.compile(r"\+?[0-9][0-9 ()-]*[0-9]")
_SUPPORT_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _invalid(field: str, problem: str) -> InputError:
    return InputError(
        f"profile field {field!r} {problem}",
        code="invalid_profile",
        field=field,
        params={"detail": f"field {field!r} {problem}"},
    )


def profile_from_toml(text: str) -> OperatorProfile:
    """Parse and check an operator profile written in TOML."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(
            f"profile is not valid TOML: {error}",
            code="invalid_profile",
            params={"detail": f"not valid TOML: {error}"},
        ) from None
    _check_field_names(data)
    code = _string(data, "code", profile_code_length_max)
    if not _PROFILE_CODE.fullmatch(code):
        raise _invalid("code", f"must be lowercase letters, digits and '_', got {code!r}")
    country = _string(data, "country", 2)
    if not _COUNTRY_CODE.fullmatch(country):
        raise _invalid("country", f"must be an ISO 3166-1 alpha-2 code like 'MY', got {country!r}")
    phone_region, calling_code = _phone_region_and_calling_code(data)
    locales = _locales(data)
    return OperatorProfile(
        code=code,
        name=_string(data, "name", profile_name_length_max),
        country=country,
        currency=_currency(data),
        phone_region=phone_region,
        calling_code=calling_code,
        time_zone=_time_zone(data),
        grace_period_days=_integer(data, "grace_period_days", 0, grace_period_days_max),
        locales=locales,
        terms=_terms(data, locales),
        postpaid_bill_due_days=_integer(
            data, "postpaid_bill_due_days", 1, postpaid_bill_due_days_max, default=14
        ),
        support=_support(data, locales),
        tax=tax_rule_from_table(data["tax"]) if "tax" in data else NO_TAX,
        reminders=policy_from_table(data.get("reminders")),
    )


def _check_field_names(data: Mapping[str, Any]) -> None:
    for name in data:
        if name not in _REQUIRED_FIELDS and name not in _OPTIONAL_FIELDS:
            known = ", ".join(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)
            raise _invalid(name, f"is not a profile field (known fields: {known})")
    for name in _REQUIRED_FIELDS:
        if name not in data:
            raise _invalid(name, "is missing")


def _string(data: Mapping[str, Any], field: str, length_max: int) -> str:
    value = data[field]
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _invalid(field, "must not be blank")
    if len(value) > length_max:
        raise _invalid(field, f"must be at most {length_max} characters long")
    return value


def _integer(
    data: Mapping[str, Any], field: str, lowest: int, highest: int, default: int | None = None
) -> int:
    value = data.get(field, default)
    # bool is a subclass of int in Python, but `true` is never a day count.
    if type(value) is not int:
        raise _invalid(field, f"must be a whole number, got {type(value).__name__}")
    if not lowest <= value <= highest:
        raise _invalid(field, f"must be between {lowest} and {highest}, got {value}")
    return value


def _currency(data: Mapping[str, Any]) -> str:
    currency = _string(data, "currency", 3)
    try:
        minor_unit_digits(currency)
    except InputError:
        raise _invalid("currency", f"is not a known ISO 4217 currency: {currency!r}") from None
    return currency


def _phone_region_and_calling_code(data: Mapping[str, Any]) -> tuple[str, int]:
    region = _string(data, "phone_region", 3)
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise _invalid("phone_region", f"is not a phone-number region: {region!r}")
    calling_code = _integer(data, "calling_code", 1, 999)
    expected = phonenumbers.country_code_for_region(region)
    if calling_code != expected:
        raise _invalid(
            "calling_code", f"must be {expected} for phone_region {region!r}, got {calling_code}"
        )
    return region, calling_code


def _time_zone(data: Mapping[str, Any]) -> str:
    name = _string(data, "time_zone", 100)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _invalid("time_zone", f"is not an IANA time zone: {name!r}") from None
    return name


def _locales(data: Mapping[str, Any]) -> tuple[str, ...]:
    value = data["locales"]
    if not isinstance(value, list):
        raise _invalid("locales", f"must be a list of locales, got {type(value).__name__}")
    if not value:
        raise _invalid("locales", "must name at least one locale (the first is the default)")
    for locale in value:
        if not isinstance(locale, str) or not _LOCALE.fullmatch(locale):
            raise _invalid("locales", f"contains {locale!r}, which is not a locale like 'zh_Hans'")
    if len(set(value)) != len(value):
        raise _invalid("locales", "must not name a locale twice")
    return tuple(value)


def _terms(data: Mapping[str, Any], locales: tuple[str, ...]) -> dict[str, dict[str, str]]:
    value = data.get("terms", {})
    if not isinstance(value, dict):
        raise _invalid("terms", "must be a table of words, each a table of locale = text")
    terms: dict[str, dict[str, str]] = {}
    for word, by_locale in value.items():
        field = f"terms.{word}"
        if not _TERM_WORD.fullmatch(word):
            raise _invalid(field, "must be named with lowercase letters, digits and '_'")
        if not isinstance(by_locale, dict):
            raise _invalid(field, "must be a table of locale = text")
        terms[word] = {}
        for locale, text in by_locale.items():
            if locale not in locales:
                raise _invalid(f"{field}.{locale}", "is for a locale not listed in 'locales'")
            if not isinstance(text, str) or not text.strip():
                raise _invalid(f"{field}.{locale}", "must be non-blank text")
            if len(text) > term_text_length_max:
                raise _invalid(
                    f"{field}.{locale}", f"must be at most {term_text_length_max} characters long"
                )
            terms[word][locale] = text
    return terms


def _support(data: Mapping[str, Any], locales: tuple[str, ...]) -> SupportContact | None:
    """``[support]``: phone, email, and ``[support.hours]`` (locale = text); each optional."""
    value = data.get("support")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("support", "must be a table with phone, email and hours")
    for name in value:
        if name not in _SUPPORT_FIELDS:
            known = ", ".join(_SUPPORT_FIELDS)
            raise _invalid(f"support.{name}", f"is not a support field (known fields: {known})")
    if not value:
        raise _invalid("support", "must name at least one of phone, email and hours")
    phone = _support_text(value, "phone", support_phone_length_max)
    if phone and not _SUPPORT_PHONE.fullmatch(phone):
        raise _invalid("support.phone", f"must be digits, blanks, '-', '(' or ')', got {phone!r}")
    email = _support_text(value, "email", support_email_length_max)
    if email and not _SUPPORT_EMAIL.fullmatch(email):
        raise _invalid("support.email", f"is not an e-mail address: {email!r}")
    hours = value.get("hours", {})
    if not isinstance(hours, dict):
        raise _invalid("support.hours", "must be a table of locale = text")
    for locale, text in hours.items():
        if locale not in locales:
            raise _invalid(f"support.hours.{locale}", "is for a locale not listed in 'locales'")
        if not isinstance(text, str) or not text.strip():
            raise _invalid(f"support.hours.{locale}", "must be non-blank text")
        if len(text) > term_text_length_max:
            raise _invalid(
                f"support.hours.{locale}", f"must be at most {term_text_length_max} characters long"
            )
    return SupportContact(phone=phone, email=email, hours=dict(hours))


def _support_text(value: Mapping[str, Any], name: str, length_max: int) -> str:
    text = value.get(name, "")
    if not isinstance(text, str):
        raise _invalid(f"support.{name}", f"must be a string, got {type(text).__name__}")
    if name in value and not text.strip():
        raise _invalid(f"support.{name}", "must not be blank")
    if len(text) > length_max:
        raise _invalid(f"support.{name}", f"must be at most {length_max} characters long")
    return text.strip()
