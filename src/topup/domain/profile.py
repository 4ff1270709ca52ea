"""Operator profile: the facts that make topup one operator's system (country, money, numbers, time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from topup.domain.reminders import ReminderPolicy
from topup.domain.tax import NO_TAX, TaxRule


@dataclass(frozen=True, slots=True)
class SupportContact:
    """How subscribers reach the operator's customer service (R8, R9): any of a phone number,
    an e-mail address and opening hours (a text per locale)."""

    phone: str = ""  # as subscribers dial it, e.g. "+60 3-2000 0000"
    email: str = ""
    hours: Mapping[str, str] = field(default_factory=dict)  # by locale

    def hours_in(self, locale: str) -> str:
        return self.hours.get(locale) or self.hours.get("en") or ""

    @property
    def phone_link(self) -> str:
        """The phone number for a ``tel:`` link: digits and a leading +."""
        digits = "".join(character for character in self.phone if character.isdigit())
        return ("+" if self.phone.strip().startswith("+") else "") + digits


@dataclass(frozen=True, slots=True)
class OperatorProfile:
    code: str  # "my", "id"
    name: str
    country: str  # ISO 3166-1 alpha-2, e.g. "MY"
    currency: str  # ISO 4217, e.g. "MYR"
    phone_region: str  # phonenumbers region, e.g. "MY"
    calling_code: int  # 60
    time_zone: str  # IANA, e.g. "Asia/Kuala_Lumpur"
    grace_period_days: int
    locales: tuple[str, ...]  # first is the default, e.g. ("en", "ms", "zh_Hans")
    # Words the operator's subscribers know, per locale: {"validity": {"id": "masa aktif"}, ...}
    terms: dict[str, dict[str, str]] = field(default_factory=dict)
    postpaid_bill_due_days: int = 14
    support: SupportContact | None = None  # customer service; None: the profile names none
    # Tax on invoices (``[tax]``): its rates and whether prices include them; none by default.
    tax: TaxRule = NO_TAX
    # [reminders]: offsets before validity and grace end, quiet hours (domain.reminders).
    reminders: ReminderPolicy = field(default_factory=ReminderPolicy)

    @property
    def default_locale(self) -> str:
        return self.locales[0]

    def term(self, word: str, locale: str) -> str:
        by_locale = self.terms.get(word, {})
        return by_locale.get(locale) or by_locale.get("en") or word
