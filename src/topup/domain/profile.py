"""Operator profile: the facts that make topup one operator's system (country, money, numbers, time)."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def default_locale(self) -> str:
        return self.locales[0]

    def term(self, word: str, locale: str) -> str:
        by_locale = self.terms.get(word, {})
        return by_locale.get(locale) or by_locale.get("en") or word
