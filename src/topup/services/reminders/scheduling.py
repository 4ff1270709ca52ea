"""Queue the reminders that are due: from the cards' dates (validity ending, grace ending, one
reminder per configured offset), found by index, and from the card events (entered grace, data
low, auto-renewal...), read once through a durable cursor.

Exactly once: the reminders table is unique on (card, kind, period), so two schedulers or a
re-run insert nothing twice; the cursor's row is locked while a batch of events is read, and
moves in the transaction that queues their reminders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from topup.domain.card_events import NO_PERIOD, validity_period
from topup.domain.cards import Card, CardStatus
from topup.domain.reminders import (
    CANCELLED_BY_RENEWAL,
    CHANNELS,
    EVENT_KINDS,
    Delivery,
    DeliveryStatus,
    NewReminder,
    Reminder,
    ReminderKind,
    ReminderStatus,
    delivery_id,
    kind_name,
    offset_window,
    readable_events,
    reminder_id,
)
from topup.ports import NumberedCardEvent
from topup.services.auto_renewal import upcoming_auto_renewals
from topup.services.context import Services

EVENTS_CURSOR = "card_events"  # the reminder cursor's name
_DATE_KINDS = (
    (ReminderKind.VALIDITY_ENDING, CardStatus.ACTIVE),
    (ReminderKind.GRACE_ENDING, CardStatus.GRACE),
)


async def queue_due_reminders(services: Services) -> int:
    """One pass: the reminders due from dates, auto-renewals coming, then events. Returns how
    many were queued."""
    queued = await queue_from_dates(services)
    queued += await queue_auto_renewals_coming(services)
    return queued + await queue_from_events(services)


async def queue_auto_renewals_coming(services: Services) -> int:
    """ "Auto-renewal coming" for each auto-renewal whose charge falls within the profile's
    ``auto_renewal_coming_days``, read from auto-renewal (soonest first, a page at a time, at
    most ``reminder_batches_per_pass_max`` pages); each (card, period) once by the unique key."""
    now = services.clock.now()
    limits = services.limits.reminders
    days = services.profile.reminders.auto_renewal_coming_days
    name = kind_name(ReminderKind.AUTO_RENEWAL_COMING)
    after: tuple[dt.datetime, str] | None = None
    queued = 0
    for _ in range(limits.reminder_batches_per_pass_max):
        found = await upcoming_auto_renewals(
            services,
            due_before=now + dt.timedelta(days=days),
            limit=limits.reminder_batch_size,
            after=after,
        )
        new = []
        for coming in found:
            detail: dict[str, str | int] = {
                "period": coming.period,
                "plan_code": coming.plan_code,
                "method": coming.method,
                "charge_at": coming.charge_at.isoformat(),
                "fix_path": coming.fix_path,
            }
            if coming.amount is not None:
                detail["amount_minor"] = coming.amount.minor
                detail["currency"] = coming.amount.currency
            new.append(
                NewReminder(
                    card_id=coming.card_id,
                    period=coming.period,
                    kind=name,
                    due_at=now,
                    detail=detail,
                )
            )
        async with services.unit_of_work() as uow:
            reminders, deliveries = _rows(services, new, now)
            inserted = await uow.reminders.add_reminders(reminders, deliveries)
            await uow.commit()
        queued += len(inserted)
        if len(found) < limits.reminder_batch_size:
            break
        last = found[-1]
        try:
            after = (dt.datetime.fromisoformat(last.period), last.card_id)
        except ValueError:
            break
    return queued


def _rows(
    services: Services, found: Sequence[NewReminder], now: dt.datetime
) -> tuple[list[Reminder], list[Delivery]]:
    """Reminders with their ids, and a delivery per channel, each due when its channel may
    speak (after quiet hours)."""
    policy = services.profile.reminders
    time_zone = services.profile.time_zone
    reminders, deliveries = [], []
    seen: set[str] = set()
    for new in found:
        made_id = reminder_id(new.card_id, new.kind, new.period)
        if made_id in seen:
            continue  # two events of one batch about the same (card, kind, period): one reminder
        seen.add(made_id)
        reminder = Reminder(
            id=made_id,
            card_id=new.card_id,
            period=new.period,
            kind=new.kind,
            due_at=new.due_at,
            detail=dict(new.detail),
            status=ReminderStatus.QUEUED,
            created_at=now,
            period_end=new.period_end,
        )
        reminders.append(reminder)
        for channel in CHANNELS:
            deliveries.append(
                Delivery(
                    id=delivery_id(reminder.id, channel),
                    reminder_id=reminder.id,
                    channel=channel,
                    status=DeliveryStatus.QUEUED,
                    next_attempt_at=policy.send_at(channel, max(now, new.due_at), time_zone),
                    attempts=0,
                    claims=0,
                )
            )
    return reminders, deliveries


async def queue_from_dates(services: Services) -> int:
    """For each date-driven kind and offset, the cards whose end is within the offset's window
    and that have no reminder of it for this end, a bounded batch at a time, each batch from
    where the one before stopped (by the index, in (validity end, id) order: no card read twice
    in a pass, however many of the window have their reminder already)."""
    now = services.clock.now()
    limits = services.limits.reminders
    policy = services.profile.reminders
    grace_days = services.profile.grace_period_days
    queued = 0
    for kind, status in _DATE_KINDS:
        offsets = policy.offsets(kind)
        end_offset_days = grace_days if kind is ReminderKind.GRACE_ENDING else 0
        for offset in offsets:
            nearest, farthest = offset_window(offsets, offset)
            name = kind_name(kind, offset)
            after: tuple[dt.datetime, str] | None = None
            for _ in range(limits.reminder_batches_per_pass_max):
                async with services.unit_of_work() as uow:
                    cards, after = await uow.reminders.due_by_date(
                        kind=name,
                        status=status.value,
                        ends_after=now + nearest,
                        ends_by=now + farthest,
                        end_offset_days=end_offset_days,
                        limit=limits.reminder_batch_size,
                        after=after,
                    )
                    found = [
                        NewReminder(
                            card_id=card.id,
                            period=validity_period(card),
                            kind=name,
                            due_at=_end(card, end_offset_days) - dt.timedelta(days=offset),
                            detail={},
                            period_end=card.validity_end,
                        )
                        for card in cards
                    ]
                    reminders, deliveries = _rows(services, found, now)
                    inserted = await uow.reminders.add_reminders(reminders, deliveries)
                    await uow.commit()
                queued += len(inserted)
                if after is None:  # the window read to its end
                    break
    return queued


def _end(card: Card, end_offset_days: int) -> dt.datetime:
    if card.validity_end is None:  # the query returns cards with a validity end only
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return card.validity_end + dt.timedelta(days=end_offset_days)


def reminders_from_events(
    events: Sequence[NumberedCardEvent], cards: Mapping[str, Card]
) -> list[NewReminder]:
    """The reminders the events make: one per event of a kind reminders are made from, for the
    period it names (or the card's, if it names none), unless the card has moved on to another
    period since (it was renewed: telling of the old one is moot)."""
    found = []
    for event in events:
        kind = EVENT_KINDS.get(event.kind)
        card = cards.get(event.card_id)
        if kind is None or card is None:
            continue
        current = validity_period(card)
        period = str(event.detail.get("period") or current)
        if kind in CANCELLED_BY_RENEWAL and period != current:
            continue
        if kind is ReminderKind.GRACE_ENTERED and card.status is not CardStatus.GRACE:
            continue
        problem = str(event.detail.get("problem", ""))
        found.append(
            NewReminder(
                card_id=card.id,
                period=period if period else NO_PERIOD,
                kind=kind_name(kind, problem=problem),
                due_at=event.at,
                detail=dict(event.detail),
            )
        )
    return found


async def queue_from_events(services: Services) -> int:
    """The card events after the cursor, a bounded batch at a time, each read once."""
    now = services.clock.now()
    limits = services.limits.reminders
    gap_wait = dt.timedelta(seconds=limits.reminder_event_gap_wait_s)
    queued = 0
    for _ in range(limits.reminder_batches_per_pass_max):
        async with services.unit_of_work() as uow:
            position = await uow.reminders.cursor(EVENTS_CURSOR, at=now)
            events = await uow.reminders.card_events_after(
                position, limit=limits.reminder_batch_size
            )
            readable = readable_events(
                [(event.id, event.at) for event in events], position, now=now, gap_wait=gap_wait
            )
            taken = events[:readable]
            if not taken:
                return queued
            wanted = [event.card_id for event in taken if event.kind in EVENT_KINDS]
            cards = await uow.cards.get_many(wanted)
            reminders, deliveries = _rows(services, reminders_from_events(taken, cards), now)
            inserted = await uow.reminders.add_reminders(reminders, deliveries)
            await uow.reminders.move_cursor(EVENTS_CURSOR, taken[-1].id, at=now)
            await uow.commit()
        queued += len(inserted)
        if readable < len(events) or len(events) < limits.reminder_batch_size:
            break
    return queued
