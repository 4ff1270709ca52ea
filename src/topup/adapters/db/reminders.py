"""Reminders, their deliveries, the card-event cursor, preferences and push subscriptions.
Never commits.

At most one reminder per (card, kind, period) and one delivery per (reminder, channel): unique
keys of the tables, so that two schedulers (or a re-run) insert each once; deliveries are leased
with FOR UPDATE SKIP LOCKED and finished only by the claim that holds them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, delete, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.bulk import dialect_insert, driver_connection, lease_due, many
from topup.adapters.db.cards import card_from_row
from topup.domain.cards import Card, CardKind
from topup.domain.errors import InvariantError
from topup.domain.reminders import (
    FINISHED,
    Delivery,
    DeliveryStatus,
    Reminder,
    ReminderChannel,
    ReminderStatus,
)
from topup.ports import NumberedCardEvent, PushSubscription, ReminderRecipient

_QUEUED = DeliveryStatus.QUEUED.value
_FINISHED_VALUES = sorted(status.value for status in FINISHED)


def reminder_from_row(row: Row[Any]) -> Reminder:
    m = row._mapping
    return Reminder(
        id=m["id"],
        card_id=m["card_id"],
        period=m["period"],
        kind=m["kind"],
        due_at=m["due_at"],
        detail=json.loads(m["detail"]),
        status=ReminderStatus(m["status"]),
        created_at=m["created_at"],
        period_end=m["period_end"],
    )


def delivery_from_row(row: Row[Any]) -> Delivery:
    m = row._mapping
    try:
        channel = ReminderChannel(m["channel"])
        status = DeliveryStatus(m["status"])
    except ValueError as error:
        raise InvariantError(f"delivery {m['id']} holds an unknown value: {error}") from None
    return Delivery(
        id=m["id"],
        reminder_id=m["reminder_id"],
        channel=channel,
        status=status,
        next_attempt_at=m["next_attempt_at"],
        attempts=int(m["attempts"]),
        claims=int(m["claims"]),
        sent_at=m["sent_at"],
        last_error=m["last_error"],
    )


# A reminder already there (same card, kind and period; or the same id) is left as it is.
_ADD_REMINDERS = (
    "WITH added AS (INSERT INTO reminders (id, card_id, period, kind, period_end, status, due_at, "
    "detail, created_at, updated_at) SELECT v.*, v.created_at FROM unnest($1::varchar[], "
    "$2::varchar[], $3::varchar[], $4::varchar[], $5::timestamptz[], $6::varchar[], "
    "$7::timestamptz[], $8::text[], $9::timestamptz[]) AS v(id, card_id, period, kind, "
    "period_end, status, due_at, detail, created_at) ON CONFLICT DO NOTHING RETURNING id) "
    "SELECT coalesce(array_agg(id), '{}') FROM added"
)
_ADD_DELIVERIES = (
    "INSERT INTO reminder_deliveries (id, reminder_id, channel, status, next_attempt_at, "
    "attempts, claims, created_at, updated_at) SELECT v.*, v.created_at FROM unnest("
    "$1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::timestamptz[], $6::int[], "
    "$7::int[], $8::timestamptz[]) AS v(id, reminder_id, channel, status, next_attempt_at, "
    "attempts, claims, created_at)"
)


class ReminderRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    # --- the scheduler ---------------------------------------------------------------------

    async def due_by_date(
        self,
        *,
        kind: str,
        status: str,
        ends_after: dt.datetime,
        ends_by: dt.datetime,
        end_offset_days: int,
        limit: int,
        after: tuple[dt.datetime, str] | None = None,
    ) -> tuple[list[Card], tuple[dt.datetime, str] | None]:
        """The next ``limit`` cards of the window by ``ix_cards_status_validity_end``, then
        each one's reminder looked up by its (card, kind, period end) index. Not one anti-join:
        the reminders table grows by the thousands within a pass, and a plan chosen while it
        looked empty scanned all its reminders of the kind for every card."""
        shift = dt.timedelta(days=end_offset_days)
        cards, reminders = t.cards, t.reminders
        window = (
            select(cards)
            .where(
                cards.c.status == status,
                cards.c.validity_end > ends_after - shift,
                cards.c.validity_end <= ends_by - shift,
                cards.c.kind == CardKind.PREPAID.value,
            )
            .order_by(cards.c.validity_end, cards.c.id)
            .limit(limit)
        )
        if after is not None:  # from where the batch before stopped, by the same index
            window = window.where(
                cards.c.validity_end >= after[0],
                or_(
                    cards.c.validity_end > after[0],
                    and_(cards.c.validity_end == after[0], cards.c.id > after[1]),
                ),
            )
        read = window.cte("due_window").prefix_with("MATERIALIZED", dialect="postgresql")
        # A scalar subquery, not EXISTS: PostgreSQL may hash an EXISTS (every reminder of the
        # kind read for each batch); this one is one index probe per card read.
        reminded = (
            select(literal(1))
            .where(
                reminders.c.card_id == read.c.id,
                reminders.c.kind == kind,
                reminders.c.period_end == read.c.validity_end,
            )
            .limit(1)
            .scalar_subquery()
            .is_not(None)
            .label("reminded")
        )
        rows = list(
            await self._connection.execute(
                select(read, reminded).order_by(read.c.validity_end, read.c.id)
            )
        )
        last = rows[-1] if len(rows) == limit else None
        return (
            [card_from_row(row) for row in rows if not row.reminded],
            None if last is None else (last.validity_end, last.id),
        )

    async def add_reminders(
        self, reminders: Sequence[Reminder], deliveries: Sequence[Delivery]
    ) -> set[str]:
        if not reminders:
            return set()
        if self._connection.dialect.name == "postgresql":
            return await self._add_by_driver(reminders, deliveries)
        rows = [
            {
                "id": reminder.id,
                "card_id": reminder.card_id,
                "period": reminder.period,
                "kind": reminder.kind,
                "period_end": reminder.period_end,
                "status": reminder.status.value,
                "due_at": reminder.due_at,
                "detail": json.dumps(dict(reminder.detail), sort_keys=True),
                "created_at": reminder.created_at,
                "updated_at": reminder.created_at,
            }
            for reminder in reminders
        ]
        statement = (
            dialect_insert(self._connection, t.reminders)
            .on_conflict_do_nothing()
            .returning(t.reminders.c.id)
        )
        inserted = {row[0] for row in await self._connection.execute(statement, rows)}
        created = {reminder.id: reminder.created_at for reminder in reminders}
        delivery_rows = [
            {
                "id": delivery.id,
                "reminder_id": delivery.reminder_id,
                "channel": delivery.channel.value,
                "status": delivery.status.value,
                "next_attempt_at": delivery.next_attempt_at,
                "attempts": delivery.attempts,
                "claims": delivery.claims,
                "created_at": created[delivery.reminder_id],
                "updated_at": created[delivery.reminder_id],
            }
            for delivery in deliveries
            if delivery.reminder_id in inserted
        ]
        if delivery_rows:
            await self._connection.execute(t.reminder_deliveries.insert(), delivery_rows)
        return inserted

    async def _add_by_driver(
        self, reminders: Sequence[Reminder], deliveries: Sequence[Delivery]
    ) -> set[str]:
        """PostgreSQL: each table's rows as one statement over arrays, sent by the driver (a
        pass queues thousands of reminders a batch, and SQLAlchemy's processing of each value
        cost more than the inserts)."""
        driver = await driver_connection(self._connection)
        found = await driver.fetchval(
            _ADD_REMINDERS,
            [reminder.id for reminder in reminders],
            [reminder.card_id for reminder in reminders],
            [reminder.period for reminder in reminders],
            [reminder.kind for reminder in reminders],
            [reminder.period_end for reminder in reminders],
            [reminder.status.value for reminder in reminders],
            [reminder.due_at for reminder in reminders],
            [json.dumps(dict(reminder.detail), sort_keys=True) for reminder in reminders],
            [reminder.created_at for reminder in reminders],
        )
        inserted = set(found)
        created = {reminder.id: reminder.created_at for reminder in reminders}
        new = [delivery for delivery in deliveries if delivery.reminder_id in inserted]
        if new:
            await driver.execute(
                _ADD_DELIVERIES,
                [delivery.id for delivery in new],
                [delivery.reminder_id for delivery in new],
                [delivery.channel.value for delivery in new],
                [delivery.status.value for delivery in new],
                [delivery.next_attempt_at for delivery in new],
                [delivery.attempts for delivery in new],
                [delivery.claims for delivery in new],
                [created[delivery.reminder_id] for delivery in new],
            )
        return inserted

    async def cursor(self, name: str, *, at: dt.datetime) -> int:
        await self._connection.execute(
            dialect_insert(self._connection, t.reminder_cursors)
            .values(name=name, position=0, updated_at=at)
            .on_conflict_do_nothing()
        )
        query = (
            select(t.reminder_cursors.c.position)
            .where(t.reminder_cursors.c.name == name)
            .with_for_update()
        )
        return int((await self._connection.execute(query)).scalar_one())

    async def move_cursor(self, name: str, position: int, *, at: dt.datetime) -> None:
        await self._connection.execute(
            update(t.reminder_cursors)
            .where(t.reminder_cursors.c.name == name)
            .values(position=position, updated_at=at)
        )

    async def card_events_after(self, position: int, *, limit: int) -> list[NumberedCardEvent]:
        events = t.card_events
        rows = await self._connection.execute(
            select(events).where(events.c.id > position).order_by(events.c.id).limit(limit)
        )
        return [
            NumberedCardEvent(int(r.id), r.card_id, r.kind, r.at, json.loads(r.detail))
            for r in rows
        ]

    # --- the sender ------------------------------------------------------------------------

    async def claim_deliveries(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[Delivery]:
        table = t.reminder_deliveries
        rows = await lease_due(
            self._connection,
            table,
            and_(table.c.status == _QUEUED, table.c.next_attempt_at <= now),
            order_by=table.c.next_attempt_at,
            limit=limit,
            values={
                "next_attempt_at": lease_until,
                "claims": table.c.claims + 1,
                "updated_at": now,
            },
        )
        return sorted((delivery_from_row(row) for row in rows), key=lambda item: item.id)

    async def reminders_by_id(self, reminder_ids: Sequence[str]) -> dict[str, Reminder]:
        if not reminder_ids:
            return {}
        rows = await self._connection.execute(
            select(t.reminders).where(t.reminders.c.id.in_(many())),
            {"ids": sorted(set(reminder_ids))},
        )
        return {row.id: reminder_from_row(row) for row in rows}

    async def recipients(self, card_ids: Sequence[str]) -> dict[str, ReminderRecipient]:
        if not card_ids:
            return {}
        ids = sorted(set(card_ids))
        cards = {
            row.id: card_from_row(row)
            for row in await self._connection.execute(
                select(t.cards).where(t.cards.c.id.in_(many())), {"ids": ids}
            )
        }
        links = t.card_links
        accounts = t.accounts
        linked = await self._connection.execute(
            select(links.c.card_id, accounts.c.id, accounts.c.email, accounts.c.language)
            .join(accounts, accounts.c.id == links.c.account_id)
            .where(links.c.card_id.in_(many()), accounts.c.confirmed_at.is_not(None))
            .order_by(links.c.card_id, links.c.linked_at, accounts.c.id),
            {"ids": ids},
        )
        first: dict[str, tuple[str, str, str]] = {}
        for card_id, account_id, email, language in linked:
            first.setdefault(card_id, (account_id, email, language))
        subscriptions: dict[str, PushSubscription] = {}
        account_ids = sorted({account_id for account_id, _, _ in first.values()})
        if account_ids:
            pushes = t.push_subscriptions
            for row in await self._connection.execute(
                select(pushes).where(pushes.c.account_id.in_(many())), {"ids": account_ids}
            ):
                subscriptions[row.account_id] = PushSubscription(row.endpoint, row.p256dh, row.auth)
        found = {}
        for card_id, card in cards.items():
            account = first.get(card_id)
            if account is None:
                found[card_id] = ReminderRecipient(card, card.email, "", None, None)
            else:
                account_id, email, language = account
                found[card_id] = ReminderRecipient(
                    card, email, language, subscriptions.get(account_id), account_id
                )
        return found

    async def finish_delivery(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        *,
        at: dt.datetime,
        error: str | None = None,
    ) -> bool:
        table = t.reminder_deliveries
        result = await self._connection.execute(
            update(table)
            .where(
                table.c.id == delivery.id,
                table.c.status == _QUEUED,
                table.c.claims == delivery.claims,
            )
            .values(
                status=status.value,
                sent_at=at if status is DeliveryStatus.SENT else None,
                attempts=table.c.attempts + (1 if status is DeliveryStatus.SENT else 0),
                last_error=error,
                updated_at=at,
            )
        )
        return bool(result.rowcount == 1)

    async def defer_delivery(
        self,
        delivery: Delivery,
        *,
        until: dt.datetime,
        at: dt.datetime,
        failed_attempt: bool,
        error: str | None = None,
    ) -> bool:
        table = t.reminder_deliveries
        result = await self._connection.execute(
            update(table)
            .where(
                table.c.id == delivery.id,
                table.c.status == _QUEUED,
                table.c.claims == delivery.claims,
            )
            .values(
                next_attempt_at=until,
                attempts=table.c.attempts + (1 if failed_attempt else 0),
                last_error=error if failed_attempt else table.c.last_error,
                updated_at=at,
            )
        )
        return bool(result.rowcount == 1)

    async def settle_reminders(self, reminder_ids: Sequence[str], *, at: dt.datetime) -> None:
        if not reminder_ids:
            return
        ids = sorted(set(reminder_ids))
        deliveries = t.reminder_deliveries
        rows = await self._connection.execute(
            select(deliveries.c.reminder_id, deliveries.c.status).where(
                deliveries.c.reminder_id.in_(many())
            ),
            {"ids": ids},
        )
        statuses: dict[str, list[str]] = {}
        for reminder_id, status in rows:
            statuses.setdefault(reminder_id, []).append(status)
        done, cancelled = [], []
        for reminder_id, found in statuses.items():
            if any(status not in _FINISHED_VALUES for status in found):
                continue
            if all(status == DeliveryStatus.CANCELLED.value for status in found):
                cancelled.append(reminder_id)
            else:
                done.append(reminder_id)
        for chosen, status in ((done, ReminderStatus.DONE), (cancelled, ReminderStatus.CANCELLED)):
            if chosen:
                await self._connection.execute(
                    update(t.reminders)
                    .where(t.reminders.c.id.in_(chosen))
                    .values(status=status.value, updated_at=at)
                )

    # --- preferences and push subscriptions ------------------------------------------------

    async def preferences(self, card_ids: Sequence[str]) -> dict[tuple[str, str], bool]:
        if not card_ids:
            return {}
        table = t.reminder_preferences
        rows = await self._connection.execute(
            select(table).where(table.c.card_id.in_(many())), {"ids": sorted(set(card_ids))}
        )
        return {(row.card_id, row.channel): bool(row.enabled) for row in rows}

    async def set_preference(
        self, card_id: str, channel: str, *, enabled: bool, at: dt.datetime
    ) -> None:
        table = t.reminder_preferences
        statement = dialect_insert(self._connection, table).values(
            card_id=card_id, channel=channel, enabled=enabled, updated_at=at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.card_id, table.c.channel],
            set_={"enabled": enabled, "updated_at": at},
        )
        await self._connection.execute(statement)

    async def save_push_subscription(
        self, account_id: str, subscription: PushSubscription, *, at: dt.datetime
    ) -> None:
        table = t.push_subscriptions
        values = {
            "endpoint": subscription.endpoint,
            "p256dh": subscription.p256dh,
            "auth": subscription.auth,
            "created_at": at,
        }
        statement = dialect_insert(self._connection, table).values(account_id=account_id, **values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.account_id], set_=values
        )
        await self._connection.execute(statement)

    async def push_subscription(self, account_id: str) -> PushSubscription | None:
        table = t.push_subscriptions
        row = (
            await self._connection.execute(select(table).where(table.c.account_id == account_id))
        ).first()
        return None if row is None else PushSubscription(row.endpoint, row.p256dh, row.auth)

    async def forget_push_subscription(self, account_id: str, *, endpoint: str | None) -> bool:
        table = t.push_subscriptions
        statement = delete(table).where(table.c.account_id == account_id)
        if endpoint is not None:
            statement = statement.where(table.c.endpoint == endpoint)
        result = await self._connection.execute(statement)
        return bool(result.rowcount)

    async def deliveries_of_card(
        self, card_id: str, *, limit: int
    ) -> list[tuple[Reminder, Delivery]]:
        reminders, deliveries = t.reminders, t.reminder_deliveries
        rows = await self._connection.execute(
            select(reminders, *(column.label(f"d_{column.name}") for column in deliveries.c))
            .join(deliveries, deliveries.c.reminder_id == reminders.c.id)
            .where(reminders.c.card_id == card_id)
            .order_by(reminders.c.created_at.desc(), reminders.c.id, deliveries.c.channel)
            .limit(limit)
        )
        found = []
        for row in rows:
            m = row._mapping
            delivery_row = {name[2:]: m[name] for name in m if name.startswith("d_")}
            found.append((reminder_from_row(row), _delivery_from_mapping(delivery_row)))
        return found


def _delivery_from_mapping(m: dict[str, Any]) -> Delivery:
    return Delivery(
        id=m["id"],
        reminder_id=m["reminder_id"],
        channel=ReminderChannel(m["channel"]),
        status=DeliveryStatus(m["status"]),
        next_attempt_at=m["next_attempt_at"],
        attempts=int(m["attempts"]),
        claims=int(m["claims"]),
        sent_at=m["sent_at"],
        last_error=m["last_error"],
    )
