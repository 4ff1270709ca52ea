"""Plans: what a card can buy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.cards import CardKind
from topup.domain.errors import ConflictError
from topup.domain.money import Money

CHANNELS: tuple[str, ...] = ("web", "store", "kiosk", "app", "api")


class PlanKind(StrEnum):
    PREPAID_PACK = "prepaid_pack"  # data quota + validity
    RELOAD = "reload"  # credit + validity
    POSTPAID_BILL = "postpaid_bill"  # pays the outstanding bill; price is what is due


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    names: dict[str, str]  # locale -> name
    kind: PlanKind
    price: Money  # for postpaid_bill: zero, the amount is the card's outstanding bill
    data_quota_mb: int
    validity_days: int
    card_kinds: frozenset[CardKind]
    channels: frozenset[str]
    active_from: dt.datetime | None = None
    active_until: dt.datetime | None = None

    def name(self, locale: str) -> str:
        return self.names.get(locale) or self.names.get("en") or self.code

    def is_on_sale(self, at: dt.datetime) -> bool:
        if self.active_from is not None and at < self.active_from:
            return False
        return not (self.active_until is not None and at >= self.active_until)

    def check_can_buy(self, *, card_kind: CardKind, channel: str, at: dt.datetime) -> None:
        """Raise a ConflictError naming why this plan cannot be bought here and now."""
        if not self.is_on_sale(at):
            raise ConflictError(
                f"plan {self.code} is not on sale now",
                code="plan_not_on_sale",
                params={"plan": self.code},
            )
        if card_kind not in self.card_kinds:
            raise ConflictError(
                f"plan {self.code} is not available for {card_kind.value} cards",
                code="plan_not_for_card_kind",
                params={"plan": self.code, "card_kind": card_kind.value},
            )
        if channel not in self.channels:
            raise ConflictError(
                f"plan {self.code} cannot be bought through the {channel} channel",
                code="plan_not_on_channel",
                params={"plan": self.code, "channel": channel},
            )
