"""Reminders in memory: the same unique keys, leases and cursor as the database's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.cards import Card, CardKind
from topup.domain.reminders import (
    FINISHED,
    Delivery,
    DeliveryStatus,
    Reminder,
    ReminderStatus,
)
from topup.ports import NumberedCardEvent, PushSubscription, ReminderRecipient


class MemoryReminderRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

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
        shift = dt.timedelta(days=end_offset_days)
        made = {
            (reminder.card_id, reminder.period_end)
            for reminder in self._tables.reminders.values()
            if reminder.kind == kind
        }
        window = [
            card
            for card in self._tables.cards.values()
            if card.kind is CardKind.PREPAID
            and card.status.value == status
            and card.validity_end is not None
            and ends_after - shift < card.validity_end <= ends_by - shift
            and (after is None or (card.validity_end, card.id) > after)
        ]
        window.sort(key=lambda card: (card.validity_end or ends_by, card.id))
        read = window[:limit]
        last = read[-1] if len(read) == limit else None
        return (
            [card for card in read if (card.id, card.validity_end) not in made],
            None if last is None or last.validity_end is None else (last.validity_end, last.id),
        )

    async def add_reminders(
        self, reminders: Sequence[Reminder], deliveries: Sequence[Delivery]
    ) -> set[str]:
        taken = {(r.card_id, r.kind, r.period) for r in self._tables.reminders.values()}
        inserted: set[str] = set()
        for reminder in reminders:
            self._tables.require_card(reminder.card_id)
            key = (reminder.card_id, reminder.kind, reminder.period)
            if key in taken or reminder.id in self._tables.reminders:
                continue
            taken.add(key)
            self._tables.reminders[reminder.id] = reminder
            inserted.add(reminder.id)
        pairs = {(d.reminder_id, d.channel) for d in self._tables.reminder_deliveries.values()}
        for delivery in deliveries:
            if delivery.reminder_id not in inserted:
                continue
            if (delivery.reminder_id, delivery.channel) in pairs:
                raise unique_violation("reminder_deliveries", delivery.reminder_id)
            pairs.add((delivery.reminder_id, delivery.channel))
            self._tables.reminder_deliveries[delivery.id] = delivery
        return inserted

    async def cursor(self, name: str, *, at: dt.datetime) -> int:
        return self._tables.reminder_cursors.setdefault(name, 0)

    async def move_cursor(self, name: str, position: int, *, at: dt.datetime) -> None:
        self._tables.reminder_cursors[name] = position

    async def card_events_after(self, position: int, *, limit: int) -> list[NumberedCardEvent]:
        events = self._tables.card_events
        return [
            NumberedCardEvent(index + 1, card_id, event.kind, event.at, dict(event.detail))
            for index, (card_id, event) in enumerate(events[position : position + limit], position)
        ]

    async def claim_deliveries(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[Delivery]:
        deliveries = self._tables.reminder_deliveries
        due = sorted(
            (
                delivery
                for delivery in deliveries.values()
                if delivery.status is DeliveryStatus.QUEUED and delivery.next_attempt_at <= now
            ),
            key=lambda delivery: (delivery.next_attempt_at, delivery.id),
        )[:limit]
        claimed = []
        for delivery in due:
            leased = replace(delivery, next_attempt_at=lease_until, claims=delivery.claims + 1)
            deliveries[delivery.id] = leased
            claimed.append(leased)
        return sorted(claimed, key=lambda item: item.id)

    async def reminders_by_id(self, reminder_ids: Sequence[str]) -> dict[str, Reminder]:
        return {
            reminder_id: self._tables.reminders[reminder_id]
            for reminder_id in reminder_ids
            if reminder_id in self._tables.reminders
        }

    async def recipients(self, card_ids: Sequence[str]) -> dict[str, ReminderRecipient]:
        links = sorted(
            (at, account_id, card_id)
            for (account_id, card_id), at in self._tables.card_links.items()
        )
        found = {}
        for card_id in card_ids:
            card = self._tables.cards.get(card_id)
            if card is None:
                continue
            recipient = ReminderRecipient(card, card.email, "", None, None)
            for _, account_id, linked_card in links:
                account = self._tables.accounts.get(account_id)
                if linked_card != card_id or account is None or account.confirmed_at is None:
                    continue
                push = self._tables.push_subscriptions.get(account_id)
                recipient = ReminderRecipient(
                    card,
                    account.email,
                    account.language,
                    None if push is None else PushSubscription(*push),
                    account_id,
                )
                break
            found[card_id] = recipient
        return found

    def _holds(self, delivery: Delivery) -> bool:
        stored = self._tables.reminder_deliveries.get(delivery.id)
        return (
            stored is not None
            and stored.status is DeliveryStatus.QUEUED
            and stored.claims == delivery.claims
        )

    async def finish_delivery(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        *,
        at: dt.datetime,
        error: str | None = None,
    ) -> bool:
        if not self._holds(delivery):
            return False
        stored = self._tables.reminder_deliveries[delivery.id]
        sent = status is DeliveryStatus.SENT
        self._tables.reminder_deliveries[delivery.id] = replace(
            stored,
            status=status,
            sent_at=at if sent else None,
            attempts=stored.attempts + (1 if sent else 0),
            last_error=error,
        )
        return True

    async def defer_delivery(
        self,
        delivery: Delivery,
        *,
        until: dt.datetime,
        at: dt.datetime,
        failed_attempt: bool,
        error: str | None = None,
    ) -> bool:
        if not self._holds(delivery):
            return False
        stored = self._tables.reminder_deliveries[delivery.id]
        self._tables.reminder_deliveries[delivery.id] = replace(
            stored,
            next_attempt_at=until,
            attempts=stored.attempts + (1 if failed_attempt else 0),
            last_error=error if failed_attempt else stored.last_error,
        )
        return True

    async def settle_reminders(self, reminder_ids: Sequence[str], *, at: dt.datetime) -> None:
        for reminder_id in set(reminder_ids):
            statuses = [
                delivery.status
                for delivery in self._tables.reminder_deliveries.values()
                if delivery.reminder_id == reminder_id
            ]
            if not statuses or any(status not in FINISHED for status in statuses):
                continue
            cancelled = all(status is DeliveryStatus.CANCELLED for status in statuses)
            reminder = self._tables.reminders[reminder_id]
            self._tables.reminders[reminder_id] = replace(
                reminder, status=ReminderStatus.CANCELLED if cancelled else ReminderStatus.DONE
            )

    async def preferences(self, card_ids: Sequence[str]) -> dict[tuple[str, str], bool]:
        wanted = set(card_ids)
        return {
            key: enabled
            for key, enabled in self._tables.reminder_preferences.items()
            if key[0] in wanted
        }

    async def set_preference(
        self, card_id: str, channel: str, *, enabled: bool, at: dt.datetime
    ) -> None:
        self._tables.require_card(card_id)
        self._tables.reminder_preferences[(card_id, channel)] = enabled

    async def save_push_subscription(
        self, account_id: str, subscription: PushSubscription, *, at: dt.datetime
    ) -> None:
        self._tables.push_subscriptions[account_id] = (
            subscription.endpoint,
            subscription.p256dh,
            subscription.auth,
        )

    async def push_subscription(self, account_id: str) -> PushSubscription | None:
        found = self._tables.push_subscriptions.get(account_id)
        return None if found is None else PushSubscription(*found)

    async def forget_push_subscription(self, account_id: str, *, endpoint: str | None) -> bool:
        found = self._tables.push_subscriptions.get(account_id)
        if found is None or (endpoint is not None and found[0] != endpoint):
            return False
        del self._tables.push_subscriptions[account_id]
        return True

    async def deliveries_of_card(
        self, card_id: str, *, limit: int
    ) -> list[tuple[Reminder, Delivery]]:
        found = [
            (self._tables.reminders[delivery.reminder_id], delivery)
            for delivery in self._tables.reminder_deliveries.values()
            if self._tables.reminders[delivery.reminder_id].card_id == card_id
        ]
        found.sort(key=lambda pair: (pair[0].created_at, pair[0].id, pair[1].channel.value))
        found.sort(key=lambda pair: pair[0].created_at, reverse=True)
        return found[:limit]
