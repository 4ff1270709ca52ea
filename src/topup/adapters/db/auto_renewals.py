"""Auto-renewal settings, attempts (one per card and period), pre-checks and auto top-ups.
Nothing here commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.cards import card_from_row
from topup.domain.auto_renewal import (
    COUNTED_TOP_UP_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    AttemptStatus,
    AutoRenewal,
    AutoRenewalAttempt,
    AutoTopUp,
    PaymentSource,
    SetterKind,
    TopUpRule,
    TopUpStatus,
)
from topup.domain.cards import Card, CardKind
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus


def _insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _setting(row: Any, currency: str) -> AutoRenewal:
    """A settings row (or anything with its ``_mapping``), amounts in the card's currency."""
    m = row._mapping
    top_up = None
    if m["top_up_plan_code"] is not None and m["top_up_below_mb"] is not None:
        amount_max = m["top_up_month_amount_max_minor"]
        top_up = TopUpRule(
            plan_code=m["top_up_plan_code"],
            below_mb=int(m["top_up_below_mb"]),
            month_count_max=m["top_up_month_count_max"],
            month_amount_max=None if amount_max is None else Money(int(amount_max), currency),
        )
    return AutoRenewal(
        card_id=m["card_id"],
        enabled=bool(m["enabled"]),
        plan_code=m["plan_code"],
        payment=PaymentSource(m["payment"]),
        saved_payment_card_id=m["saved_payment_card_id"],
        payment_account_id=m["payment_account_id"],
        set_by=SetterKind(m["set_by"]),
        set_by_id=m["set_by_id"],
        channel=m["channel"],
        top_up=top_up,
        top_up_armed=bool(m["top_up_armed"]),
        top_ups=int(m["top_ups"]),
        next_check_at=m["next_check_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _setting_values(setting: AutoRenewal) -> dict[str, Any]:
    top_up = setting.top_up
    return {
        "card_id": setting.card_id,
        "enabled": setting.enabled,
        "plan_code": setting.plan_code,
        "payment": setting.payment.value,
        "saved_payment_card_id": setting.saved_payment_card_id,
        "payment_account_id": setting.payment_account_id,
        "set_by": setting.set_by.value,
        "set_by_id": setting.set_by_id,
        "channel": setting.channel,
        "top_up_plan_code": None if top_up is None else top_up.plan_code,
        "top_up_below_mb": None if top_up is None else top_up.below_mb,
        "top_up_month_count_max": None if top_up is None else top_up.month_count_max,
        "top_up_month_amount_max_minor": (
            None
            if top_up is None or top_up.month_amount_max is None
            else top_up.month_amount_max.minor
        ),
        "top_up_armed": setting.top_up_armed,
        "top_ups": setting.top_ups,
        "next_check_at": setting.next_check_at,
        "created_at": setting.created_at,
        "updated_at": setting.updated_at,
    }


def _attempt(row: Row[Any]) -> AutoRenewalAttempt:
    m = row._mapping
    return AutoRenewalAttempt(
        card_id=m["card_id"],
        period=m["period"],
        status=AttemptStatus(m["status"]),
        tries=int(m["tries"]),
        try_key=m["try_key"],
        renewal_id=m["renewal_id"],
        next_try_at=m["next_try_at"],
        problem=m["problem"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        paid_by_organisation_id=m["paid_by_organisation_id"],
    )


def _attempt_values(attempt: AutoRenewalAttempt) -> dict[str, Any]:
    return {
        "card_id": attempt.card_id,
        "period": attempt.period,
        "status": attempt.status.value,
        "tries": attempt.tries,
        "try_key": attempt.try_key,
        "renewal_id": attempt.renewal_id,
        "next_try_at": attempt.next_try_at,
        "problem": attempt.problem,
        "created_at": attempt.created_at,
        "updated_at": attempt.updated_at,
        "paid_by_organisation_id": attempt.paid_by_organisation_id,
    }


_SETTINGS_WITH_CURRENCY = select(t.auto_renewals, t.cards.c.currency.label("card_currency")).join(
    t.cards, t.cards.c.id == t.auto_renewals.c.card_id
)


class AutoRenewalRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, card_id: str, *, for_update: bool = False) -> AutoRenewal | None:
        query = _SETTINGS_WITH_CURRENCY.where(t.auto_renewals.c.card_id == card_id)
        if for_update:
            query = query.with_for_update(of=t.auto_renewals)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _setting(row, row.card_currency)

    async def of_cards(self, card_ids: Sequence[str]) -> dict[str, AutoRenewal]:
        if not card_ids:
            return {}
        query = _SETTINGS_WITH_CURRENCY.where(t.auto_renewals.c.card_id.in_(list(card_ids)))
        rows = await self._connection.execute(query)
        return {row.card_id: _setting(row, row.card_currency) for row in rows}

    async def put(self, setting: AutoRenewal) -> None:
        values = _setting_values(setting)
        table = t.auto_renewals
        changed = {key: value for key, value in values.items() if key not in ("card_id",)}
        changed.pop("created_at")
        statement = (
            _insert(self._connection, table)
            .values(**values)
            .on_conflict_do_update(index_elements=[table.c.card_id], set_=changed)
        )
        await self._connection.execute(statement)

    async def lease_due(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[AutoRenewal]:
        table = t.auto_renewals
        picked = (
            select(table.c.card_id)
            .where(table.c.enabled.is_(True), table.c.next_check_at <= now)
            .order_by(table.c.next_check_at, table.c.card_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        card_ids = [row[0] for row in await self._connection.execute(picked)]
        if not card_ids:
            return []
        await self._connection.execute(
            update(table).where(table.c.card_id.in_(card_ids)).values(next_check_at=lease_until)
        )
        found = await self.of_cards(card_ids)
        return [found[card_id] for card_id in card_ids if card_id in found]

    async def schedule(self, card_id: str, *, next_check_at: dt.datetime | None) -> None:
        table = t.auto_renewals
        await self._connection.execute(
            update(table).where(table.c.card_id == card_id).values(next_check_at=next_check_at)
        )

    async def wake(self, card_ids: Sequence[str], *, at: dt.datetime) -> None:
        if not card_ids:
            return
        table = t.auto_renewals
        await self._connection.execute(
            update(table)
            .where(
                table.c.card_id.in_(sorted(set(card_ids))),
                table.c.enabled.is_(True),
                or_(table.c.next_check_at.is_(None), table.c.next_check_at > at),
            )
            .values(next_check_at=at)
        )

    async def set_top_up_state(self, card_id: str, *, armed: bool, top_ups: int) -> None:
        table = t.auto_renewals
        await self._connection.execute(
            update(table)
            .where(table.c.card_id == card_id)
            .values(top_up_armed=armed, top_ups=top_ups)
        )

    async def upcoming(
        self, *, validity_before: dt.datetime, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[tuple[AutoRenewal, Card]]:
        cards, table = t.cards, t.auto_renewals
        query = (
            select(cards, *[column.label(f"ar_{column.name}") for column in table.c])
            .join(table, table.c.card_id == cards.c.id)
            .where(
                table.c.enabled.is_(True),
                cards.c.kind == CardKind.PREPAID.value,
                cards.c.validity_end < validity_before,
            )
            .order_by(cards.c.validity_end, cards.c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(
                or_(
                    cards.c.validity_end > after[0],
                    and_(cards.c.validity_end == after[0], cards.c.id > after[1]),
                )
            )
        return [self._pair(row) for row in await self._connection.execute(query)]

    async def attempt(
        self, card_id: str, period: str, *, for_update: bool = False
    ) -> AutoRenewalAttempt | None:
        table = t.auto_renewal_attempts
        query = select(table).where(table.c.card_id == card_id, table.c.period == period)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return None if row is None else _attempt(row)

    async def open_attempts(self, card_id: str) -> list[AutoRenewalAttempt]:
        table = t.auto_renewal_attempts
        query = (
            select(table)
            .where(
                table.c.card_id == card_id,
                table.c.status.in_([status.value for status in OPEN_ATTEMPT_STATUSES]),
            )
            .order_by(table.c.period)
        )
        return [_attempt(row) for row in await self._connection.execute(query)]

    async def add_attempt(self, attempt: AutoRenewalAttempt) -> bool:
        table = t.auto_renewal_attempts
        statement = (
            _insert(self._connection, table)
            .values(**_attempt_values(attempt))
            .on_conflict_do_nothing(index_elements=[table.c.card_id, table.c.period])
            .returning(table.c.card_id)
        )
        return (await self._connection.execute(statement)).first() is not None

    async def update_attempt(self, attempt: AutoRenewalAttempt) -> None:
        table = t.auto_renewal_attempts
        values = _attempt_values(attempt)
        for key in ("card_id", "period", "created_at"):
            values.pop(key)
        await self._connection.execute(
            update(table)
            .where(table.c.card_id == attempt.card_id, table.c.period == attempt.period)
            .values(**values)
        )

    async def add_precheck(
        self, card_id: str, period: str, offset_s: int, *, problems: str, at: dt.datetime
    ) -> bool:
        table = t.auto_renewal_prechecks
        statement = (
            _insert(self._connection, table)
            .values(
                card_id=card_id, period=period, offset_s=offset_s, problems=problems, checked_at=at
            )
            .on_conflict_do_nothing(
                index_elements=[table.c.card_id, table.c.period, table.c.offset_s]
            )
            .returning(table.c.card_id)
        )
        return (await self._connection.execute(statement)).first() is not None

    async def prechecks_done(self, card_id: str, period: str) -> frozenset[int]:
        table = t.auto_renewal_prechecks
        query = select(table.c.offset_s).where(table.c.card_id == card_id, table.c.period == period)
        return frozenset(int(row[0]) for row in await self._connection.execute(query))

    async def precheck_problems(self, card_id: str, period: str, offset_s: int) -> str:
        table = t.auto_renewal_prechecks
        query = select(table.c.problems).where(
            table.c.card_id == card_id, table.c.period == period, table.c.offset_s == offset_s
        )
        found = (await self._connection.execute(query)).scalar_one_or_none()
        return found or ""

    async def top_ups_due(self, *, limit: int) -> list[tuple[AutoRenewal, Card]]:
        cards, table = t.cards, t.auto_renewals
        below = cards.c.data_quota_mb < table.c.top_up_below_mb
        query = (
            select(cards, *[column.label(f"ar_{column.name}") for column in table.c])
            .join(table, table.c.card_id == cards.c.id)
            .where(
                table.c.enabled.is_(True),
                table.c.top_up_plan_code.is_not(None),
                or_(
                    and_(table.c.top_up_armed.is_(True), below),
                    and_(table.c.top_up_armed.is_(False), ~below),
                ),
            )
            .order_by(cards.c.id)
            .limit(limit)
        )
        return [self._pair(row) for row in await self._connection.execute(query)]

    @staticmethod
    def _pair(row: Row[Any]) -> tuple[AutoRenewal, Card]:
        card = card_from_row(row)
        values = {column.name: row._mapping[f"ar_{column.name}"] for column in t.auto_renewals.c}
        return _setting(_Mapped(values), card.currency), card

    async def add_top_up(self, top_up: AutoTopUp) -> bool:
        table = t.auto_top_ups
        statement = (
            _insert(self._connection, table)
            .values(
                card_id=top_up.card_id,
                crossing=top_up.crossing,
                renewal_key=top_up.renewal_key,
                plan_code=top_up.plan_code,
                amount_minor=top_up.amount.minor,
                currency=top_up.amount.currency,
                status=top_up.status.value,
                renewal_id=top_up.renewal_id,
                at=top_up.at,
                paid_by_organisation_id=top_up.paid_by_organisation_id,
            )
            .on_conflict_do_nothing(index_elements=[table.c.card_id, table.c.crossing])
            .returning(table.c.card_id)
        )
        return (await self._connection.execute(statement)).first() is not None

    async def update_top_up(
        self,
        card_id: str,
        crossing: int,
        *,
        status: TopUpStatus,
        renewal_id: str | None,
        only_if: TopUpStatus | None = None,
    ) -> bool:
        table = t.auto_top_ups
        statement = update(table).where(table.c.card_id == card_id, table.c.crossing == crossing)
        if only_if is not None:
            statement = statement.where(table.c.status == only_if.value)
        result = await self._connection.execute(
            statement.values(status=status.value, renewal_id=renewal_id)
        )
        return bool(result.rowcount)

    async def unsettled_top_ups(
        self, *, started_before: dt.datetime, refunded_since: dt.datetime, limit: int
    ) -> list[AutoTopUp]:
        table, renewals = t.auto_top_ups, t.renewals
        started = (
            select(table)
            .where(table.c.status == TopUpStatus.STARTED.value, table.c.at < started_before)
            .order_by(table.c.at)
            .limit(limit)
        )
        refunded = (
            select(table)
            .join(renewals, renewals.c.id == table.c.renewal_id)
            .where(
                table.c.status == TopUpStatus.SUCCEEDED.value,
                table.c.at >= refunded_since,
                renewals.c.status == RenewalStatus.REFUNDED.value,
            )
            .order_by(table.c.at)
            .limit(limit)
        )
        rows = [
            *(await self._connection.execute(started)).all(),
            *(await self._connection.execute(refunded)).all(),
        ]
        found = [_top_up(row._mapping) for row in rows]
        return sorted(found, key=lambda top_up: top_up.at)[:limit]

    async def top_ups_since(self, card_id: str, *, since: dt.datetime) -> tuple[int, int]:
        table = t.auto_top_ups
        query = select(func.count(), func.coalesce(func.sum(table.c.amount_minor), 0)).where(
            table.c.card_id == card_id,
            table.c.at >= since,
            table.c.status.in_([status.value for status in COUNTED_TOP_UP_STATUSES]),
        )
        count, amount = (await self._connection.execute(query)).one()
        return int(count), int(amount)


def _top_up(m: Any) -> AutoTopUp:
    return AutoTopUp(
        card_id=m["card_id"],
        crossing=int(m["crossing"]),
        renewal_key=m["renewal_key"],
        plan_code=m["plan_code"],
        amount=Money(int(m["amount_minor"]), m["currency"]),
        status=TopUpStatus(m["status"]),
        renewal_id=m["renewal_id"],
        paid_by_organisation_id=m["paid_by_organisation_id"],
        at=m["at"],
    )


class _Mapped:
    """A plain dict standing in for a row (``_setting`` reads ``row._mapping``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values
