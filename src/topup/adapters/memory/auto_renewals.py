"""Auto-renewal settings, attempts, pre-checks and top-ups, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.auto_renewal import (
    COUNTED_TOP_UP_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    AutoRenewal,
    AutoRenewalAttempt,
    AutoTopUp,
    TopUpStatus,
)
from topup.domain.cards import Card, CardKind
from topup.domain.renewal import RenewalStatus


class MemoryAutoRenewalRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def get(self, card_id: str, *, for_update: bool = False) -> AutoRenewal | None:
        return self._tables.auto_renewals.get(card_id)

    async def of_cards(self, card_ids: Sequence[str]) -> dict[str, AutoRenewal]:
        settings = self._tables.auto_renewals
        return {card_id: settings[card_id] for card_id in card_ids if card_id in settings}

    async def put(self, setting: AutoRenewal) -> None:
        if setting.card_id not in self._tables.cards:
            raise unique_violation("auto_renewals.card_id (foreign key)", setting.card_id)
        kept = self._tables.auto_renewals.get(setting.card_id)
        if kept is not None:
            setting = replace(setting, created_at=kept.created_at)
        self._tables.auto_renewals[setting.card_id] = setting

    async def lease_due(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[AutoRenewal]:
        due = sorted(
            (
                setting
                for setting in self._tables.auto_renewals.values()
                if setting.enabled
                and setting.next_check_at is not None
                and setting.next_check_at <= now
            ),
            key=lambda setting: (setting.next_check_at, setting.card_id),
        )[:limit]
        for setting in due:
            self._tables.auto_renewals[setting.card_id] = replace(
                setting, next_check_at=lease_until
            )
        return [self._tables.auto_renewals[setting.card_id] for setting in due]

    async def schedule(self, card_id: str, *, next_check_at: dt.datetime | None) -> None:
        setting = self._tables.auto_renewals.get(card_id)
        if setting is not None:
            self._tables.auto_renewals[card_id] = replace(setting, next_check_at=next_check_at)

    async def wake(self, card_ids: Sequence[str], *, at: dt.datetime) -> None:
        for card_id in set(card_ids):
            setting = self._tables.auto_renewals.get(card_id)
            if setting is None or not setting.enabled:
                continue
            if setting.next_check_at is None or setting.next_check_at > at:
                self._tables.auto_renewals[card_id] = replace(setting, next_check_at=at)

    async def set_top_up_state(self, card_id: str, *, armed: bool, top_ups: int) -> None:
        setting = self._tables.auto_renewals.get(card_id)
        if setting is not None:
            self._tables.auto_renewals[card_id] = replace(
                setting, top_up_armed=armed, top_ups=top_ups
            )

    async def upcoming(
        self, *, validity_before: dt.datetime, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[tuple[AutoRenewal, Card]]:
        found: list[tuple[AutoRenewal, Card]] = []
        for setting in self._tables.auto_renewals.values():
            card = self._tables.cards.get(setting.card_id)
            if (
                not setting.enabled
                or card is None
                or card.kind is not CardKind.PREPAID
                or card.validity_end is None
                or card.validity_end >= validity_before
            ):
                continue
            if after is not None and (card.validity_end, card.id) <= after:
                continue
            found.append((setting, card))
        found.sort(key=lambda pair: (pair[1].validity_end, pair[1].id))
        return found[:limit]

    async def attempt(
        self, card_id: str, period: str, *, for_update: bool = False
    ) -> AutoRenewalAttempt | None:
        return self._tables.auto_renewal_attempts.get((card_id, period))

    async def open_attempts(self, card_id: str) -> list[AutoRenewalAttempt]:
        return sorted(
            (
                attempt
                for (card, _), attempt in self._tables.auto_renewal_attempts.items()
                if card == card_id and attempt.status in OPEN_ATTEMPT_STATUSES
            ),
            key=lambda attempt: attempt.period,
        )

    async def add_attempt(self, attempt: AutoRenewalAttempt) -> bool:
        attempts = self._tables.auto_renewal_attempts
        if (attempt.card_id, attempt.period) in attempts:
            return False
        if any(other.try_key == attempt.try_key for other in attempts.values()):
            raise unique_violation("auto_renewal_attempts.try_key", attempt.try_key)
        attempts[(attempt.card_id, attempt.period)] = attempt
        return True

    async def update_attempt(self, attempt: AutoRenewalAttempt) -> None:
        key = (attempt.card_id, attempt.period)
        kept = self._tables.auto_renewal_attempts.get(key)
        if kept is not None:
            self._tables.auto_renewal_attempts[key] = replace(attempt, created_at=kept.created_at)

    async def add_precheck(
        self, card_id: str, period: str, offset_s: int, *, problems: str, at: dt.datetime
    ) -> bool:
        key = (card_id, period, offset_s)
        if key in self._tables.auto_renewal_prechecks:
            return False
        self._tables.auto_renewal_prechecks[key] = problems
        return True

    async def prechecks_done(self, card_id: str, period: str) -> frozenset[int]:
        return frozenset(
            offset
            for (card, card_period, offset) in self._tables.auto_renewal_prechecks
            if (card, card_period) == (card_id, period)
        )

    async def precheck_problems(self, card_id: str, period: str, offset_s: int) -> str:
        return self._tables.auto_renewal_prechecks.get((card_id, period, offset_s), "")

    async def top_ups_due(self, *, limit: int) -> list[tuple[AutoRenewal, Card]]:
        found: list[tuple[AutoRenewal, Card]] = []
        for card_id in sorted(self._tables.auto_renewals):
            setting = self._tables.auto_renewals[card_id]
            card = self._tables.cards.get(card_id)
            if not setting.enabled or setting.top_up is None or card is None:
                continue
            below = card.data_quota_mb < setting.top_up.below_mb
            if below == setting.top_up_armed:
                found.append((setting, card))
        return found[:limit]

    async def add_top_up(self, top_up: AutoTopUp) -> bool:
        key = (top_up.card_id, top_up.crossing)
        if key in self._tables.auto_top_ups:
            return False
        self._tables.auto_top_ups[key] = top_up
        return True

    async def update_top_up(
        self,
        card_id: str,
        crossing: int,
        *,
        status: TopUpStatus,
        renewal_id: str | None,
        only_if: TopUpStatus | None = None,
    ) -> bool:
        kept = self._tables.auto_top_ups.get((card_id, crossing))
        if kept is None or (only_if is not None and kept.status is not only_if):
            return False
        self._tables.auto_top_ups[(card_id, crossing)] = replace(
            kept, status=status, renewal_id=renewal_id
        )
        return True

    async def unsettled_top_ups(
        self, *, started_before: dt.datetime, refunded_since: dt.datetime, limit: int
    ) -> list[AutoTopUp]:
        def refunded(top_up: AutoTopUp) -> bool:
            renewal = self._tables.renewals.get(top_up.renewal_id or "")
            return renewal is not None and renewal.status is RenewalStatus.REFUNDED

        found = [
            top_up
            for top_up in self._tables.auto_top_ups.values()
            if (top_up.status is TopUpStatus.STARTED and top_up.at < started_before)
            or (
                top_up.status is TopUpStatus.SUCCEEDED
                and top_up.at >= refunded_since
                and refunded(top_up)
            )
        ]
        return sorted(found, key=lambda top_up: top_up.at)[:limit]

    async def top_ups_since(self, card_id: str, *, since: dt.datetime) -> tuple[int, int]:
        counted = [
            top_up
            for (card, _), top_up in self._tables.auto_top_ups.items()
            if card == card_id and top_up.at >= since and top_up.status in COUNTED_TOP_UP_STATUSES
        ]
        return len(counted), sum(top_up.amount.minor for top_up in counted)
