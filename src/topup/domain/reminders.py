"""Reminders: what a card's subscriber is told, at most once per (card, validity period, kind), on
each channel (SMS, e-mail, web push).

    reminder (card, period, kind) --queued--> one delivery per channel
    delivery: queued --claimed (a lease)--> sent | skipped (turned off, nowhere to send)
              | cancelled (the card was renewed: its period is not the reminder's) | failed
              (gave up after its attempts); a claim that runs out is claimed again.

Kinds come from the card's dates (validity ending, grace ending: one reminder per configured
offset) and from card events (entered grace, data low, auto-renewal...). Pure: times come in.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from topup.domain.card_events import CardEventKind
from topup.domain.errors import InputError

OFFSET_DAYS_MAX = 60
OFFSETS_MAX = 5
_QUIET_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
KIND_LENGTH_MAX = 64


class ReminderChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"


CHANNELS: tuple[ReminderChannel, ...] = tuple(ReminderChannel)


class ReminderKind(StrEnum):
    """The base kinds; a date-driven kind's stored name carries its offset (``kind_name``)."""

    VALIDITY_ENDING = "validity_ending"
    GRACE_ENTERED = "grace_entered"
    GRACE_ENDING = "grace_ending"
    DATA_LOW = "data_low"
    DATA_EXHAUSTED = "data_exhausted"
    CREDIT_LOW = "credit_low"
    AUTO_RENEWAL_COMING = "auto_renewal_coming"
    AUTO_RENEWAL_PROBLEM = "auto_renewal_problem"
    AUTO_RENEWAL_SUCCEEDED = "auto_renewal_succeeded"
    AUTO_RENEWAL_FAILED = "auto_renewal_failed"


DATE_KINDS = frozenset({ReminderKind.VALIDITY_ENDING, ReminderKind.GRACE_ENDING})
# A renewal makes these moot: one not yet sent is cancelled when the card's period moves on.
# (An auto-renewal that succeeded is itself a renewal: telling of it stays true.)
CANCELLED_BY_RENEWAL = frozenset(ReminderKind) - {ReminderKind.AUTO_RENEWAL_SUCCEEDED}

# The card events reminders are made from, and the kind each makes.
EVENT_KINDS: Mapping[str, ReminderKind] = {
    CardEventKind.STATUS_GRACE.value: ReminderKind.GRACE_ENTERED,
    CardEventKind.DATA_LOW.value: ReminderKind.DATA_LOW,
    CardEventKind.DATA_EXHAUSTED.value: ReminderKind.DATA_EXHAUSTED,
    CardEventKind.CREDIT_LOW.value: ReminderKind.CREDIT_LOW,
    CardEventKind.AUTO_RENEWAL_COMING.value: ReminderKind.AUTO_RENEWAL_COMING,
    CardEventKind.AUTO_RENEWAL_PROBLEM.value: ReminderKind.AUTO_RENEWAL_PROBLEM,
    CardEventKind.AUTO_RENEWAL_SUCCEEDED.value: ReminderKind.AUTO_RENEWAL_SUCCEEDED,
    CardEventKind.AUTO_RENEWAL_FAILED.value: ReminderKind.AUTO_RENEWAL_FAILED,
}

# "Auto-renewal coming" comes from the event a passed pre-check writes, and from the
# auto-renewals coming within ``ReminderPolicy.auto_renewal_coming_days``
# (services.auto_renewal.upcoming_auto_renewals): whichever is first, one reminder per period.


def kind_name(kind: ReminderKind, offset_days: int | None = None, problem: str = "") -> str:
    """The stored kind: ``validity_ending_3d`` for a date-driven kind and its offset;
    ``auto_renewal_problem:plan_withdrawn`` for a problem (another problem in the same period
    is another reminder, the same one found again is not)."""
    if offset_days is not None:
        return f"{kind.value}_{offset_days}d"
    if kind is ReminderKind.AUTO_RENEWAL_PROBLEM and problem:
        return f"{kind.value}:{problem}"[:KIND_LENGTH_MAX]
    return kind.value


def parse_kind_name(name: str) -> tuple[ReminderKind, int | None]:
    """``validity_ending_3d`` -> (VALIDITY_ENDING, 3); ``data_low`` -> (DATA_LOW, None)."""
    for kind in DATE_KINDS:
        prefix = kind.value + "_"
        if name.startswith(prefix) and name.endswith("d") and name[len(prefix) : -1].isdigit():
            return kind, int(name[len(prefix) : -1])
    return ReminderKind(name.partition(":")[0]), None


def readable_events(
    events: Sequence[tuple[int, dt.datetime]],
    position: int,
    *,
    now: dt.datetime,
    gap_wait: dt.timedelta,
) -> int:
    """How many of ``events`` (id, written at; by id, all above ``position``) the cursor may
    pass now. Ids are handed out before commit, so a missing id may be a transaction still
    writing (its event would be skipped for ever): reading stops at a gap until the event after
    it is ``gap_wait`` old (by then the missing one was rolled back)."""
    expected = position + 1
    for count, (event_id, at) in enumerate(events):
        if event_id != expected and now - at < gap_wait:
            return count
        expected = event_id + 1
    return len(events)


class ReminderStatus(StrEnum):
    QUEUED = "queued"  # some delivery may still go
    DONE = "done"  # every delivery sent, skipped or failed
    CANCELLED = "cancelled"  # the card was renewed before it went


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    SKIPPED = "skipped"  # turned off for this card and channel, or nowhere to send it
    CANCELLED = "cancelled"
    FAILED = "failed"


FINISHED = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.SKIPPED, DeliveryStatus.CANCELLED, DeliveryStatus.FAILED}
)


@dataclass(frozen=True, slots=True)
class Reminder:
    id: str
    card_id: str
    period: str  # validity_period(card) when it was made
    kind: str  # kind_name(...)
    due_at: dt.datetime
    detail: Mapping[str, str | int]
    status: ReminderStatus
    created_at: dt.datetime
    # The card's validity end the reminder was made for (date-driven kinds): the scheduler
    # finds the cards without one by comparing it with theirs.
    period_end: dt.datetime | None = None

    @property
    def base_kind(self) -> ReminderKind:
        return parse_kind_name(self.kind)[0]

    @property
    def offset_days(self) -> int | None:
        return parse_kind_name(self.kind)[1]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # also the provider's idempotency key
    reminder_id: str
    channel: ReminderChannel
    status: DeliveryStatus
    next_attempt_at: dt.datetime
    attempts: int
    claims: int
    sent_at: dt.datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class NewReminder:
    """A reminder to queue: the scheduler's finding, before it has an id."""

    card_id: str
    period: str
    kind: str
    due_at: dt.datetime
    detail: Mapping[str, str | int] = field(default_factory=dict)
    period_end: dt.datetime | None = None


# Reminders' and deliveries' ids are made from their unique keys (UUID 5), not drawn: the same
# reminder found by two schedulers has one id, and the delivery's id (the provider's idempotency
# key) is the same whoever queues it.
_REMINDER_IDS = uuid.UUID("5d0c9a52-6f7e-4f1b-9a55-2b6f0f0c1e11")


def reminder_id(card_id: str, kind: str, period: str) -> str:
    return str(uuid.uuid5(_REMINDER_IDS, f"reminder|{card_id}|{kind}|{period}"))


def delivery_id(reminder: str, channel: ReminderChannel) -> str:
    return str(uuid.uuid5(_REMINDER_IDS, f"delivery|{reminder}|{channel.value}"))


# --- quiet hours -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily span of local time (``21:00-08:00`` crosses midnight) in which a channel is quiet."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        found = _QUIET_HOURS.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"quiet hours look like '21:00-08:00', got {text!r}")
        hour_start, minute_start, hour_end, minute_end = (int(part) for part in found.groups())
        return cls(dt.time(hour_start, minute_start), dt.time(hour_end, minute_end))

    def contains(self, local: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, at: dt.datetime, time_zone: str) -> dt.datetime:
        """``at`` if it is outside quiet hours in ``time_zone``, else when they end (UTC)."""
        zone = ZoneInfo(time_zone)
        local = at.astimezone(zone)
        if not self.contains(local.time().replace(tzinfo=None)):
            return at
        end_day = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            end_day += dt.timedelta(days=1)  # quiet since this evening: it ends tomorrow
        ends = dt.datetime.combine(end_day, self.end, tzinfo=zone)
        # A wall-clock time skipped by a DST change: ZoneInfo gives the instant after the gap.
        return max(at, ends.astimezone(dt.UTC))


# --- the profile's policy --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """The profile's ``[reminders]`` table."""

    validity_ending_days: tuple[int, ...] = (3, 1)  # before validity ends, largest first
    grace_ending_days: tuple[int, ...] = (3,)  # before grace ends
    quiet_hours: QuietHours | None = field(
        default_factory=lambda: QuietHours(dt.time(21, 0), dt.time(8, 0))
    )
    quiet_channels: frozenset[ReminderChannel] = frozenset(
        {ReminderChannel.SMS, ReminderChannel.PUSH}
    )
    auto_renewal_coming_days: int = 3  # before an auto-renewal's charge

    def offsets(self, kind: ReminderKind) -> tuple[int, ...]:
        if kind is ReminderKind.VALIDITY_ENDING:
            return self.validity_ending_days
        if kind is ReminderKind.GRACE_ENDING:
            return self.grace_ending_days
        return ()

    def send_at(self, channel: ReminderChannel, at: dt.datetime, time_zone: str) -> dt.datetime:
        """When a message due ``at`` may go on ``channel``: after quiet hours if it is quiet."""
        if self.quiet_hours is None or channel not in self.quiet_channels:
            return at
        return self.quiet_hours.next_allowed(at, time_zone)


_POLICY_FIELDS = (
    "validity_ending_days",
    "grace_ending_days",
    "quiet_hours",
    "quiet_channels",
    "auto_renewal_coming_days",
)


def _policy_invalid(name: str, problem: str) -> InputError:
    field_name = f"reminders.{name}" if name else "reminders"
    return InputError(
        f"profile field {field_name!r} {problem}",
        code="invalid_profile",
        field=field_name,
        params={"detail": f"field {field_name!r} {problem}"},
    )


def policy_from_table(value: Any) -> ReminderPolicy:
    """``[reminders]`` of a profile: ``validity_ending_days = [3, 1]``, ``grace_ending_days =
    [3]``, ``quiet_hours = "21:00-08:00"`` (or ``""``: none), ``quiet_channels = ["sms",
    "push"]``; InputError ``invalid_profile`` naming the field at fault."""
    if value is None:
        return ReminderPolicy()
    if not isinstance(value, dict):
        raise _policy_invalid("", "must be a table")
    for name in value:
        if name not in _POLICY_FIELDS:
            raise _policy_invalid(
                name, f"is not a reminders field (known: {', '.join(_POLICY_FIELDS)})"
            )
    default = ReminderPolicy()
    quiet: QuietHours | None = default.quiet_hours
    if "quiet_hours" in value:
        text = value["quiet_hours"]
        if not isinstance(text, str):
            raise _policy_invalid("quiet_hours", "must be a text like '21:00-08:00'")
        try:
            quiet = QuietHours.parse(text) if text.strip() else None
        except ValueError as error:
            raise _policy_invalid("quiet_hours", str(error)) from None
    channels = default.quiet_channels
    if "quiet_channels" in value:
        names = value["quiet_channels"]
        known = [channel.value for channel in CHANNELS]
        if not isinstance(names, list) or any(name not in known for name in names):
            raise _policy_invalid("quiet_channels", f"must be a list of {', '.join(known)}")
        channels = frozenset(ReminderChannel(name) for name in names)
    coming = value.get("auto_renewal_coming_days", default.auto_renewal_coming_days)
    if type(coming) is not int or not 1 <= coming <= OFFSET_DAYS_MAX:
        raise _policy_invalid(
            "auto_renewal_coming_days", f"must be whole days from 1 to {OFFSET_DAYS_MAX}"
        )
    return ReminderPolicy(
        auto_renewal_coming_days=coming,
        validity_ending_days=_offsets(value, "validity_ending_days", default.validity_ending_days),
        grace_ending_days=_offsets(value, "grace_ending_days", default.grace_ending_days),
        quiet_hours=quiet,
        quiet_channels=channels,
    )


def _offsets(value: Mapping[str, Any], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    days = value.get(name, list(default))
    if not isinstance(days, list) or len(days) > OFFSETS_MAX:
        raise _policy_invalid(name, f"must be a list of at most {OFFSETS_MAX} day counts")
    for day in days:
        if type(day) is not int or not 1 <= day <= OFFSET_DAYS_MAX:
            raise _policy_invalid(name, f"must hold whole days from 1 to {OFFSET_DAYS_MAX}")
    if len(set(days)) != len(days):
        raise _policy_invalid(name, "must not name a day twice")
    return tuple(sorted(days, reverse=True))


# --- date-driven reminders -------------------------------------------------------------------


def offset_window(offsets: Sequence[int], offset_days: int) -> tuple[dt.timedelta, dt.timedelta]:
    """For the reminder ``offset_days`` before an end: it is due while the end is at most
    ``offset_days`` away and more than the next smaller offset away (else that one is due, and
    an older reminder is not sent late). Returns (nearest, farthest) distances to the end."""
    smaller = [day for day in offsets if day < offset_days]
    nearest = dt.timedelta(days=max(smaller)) if smaller else dt.timedelta(0)
    return nearest, dt.timedelta(days=offset_days)


def due_offset(offsets: Sequence[int], ends_at: dt.datetime, now: dt.datetime) -> int | None:
    """Which offset's reminder is due now for something ending ``ends_at`` (None: none)."""
    for offset in offsets:
        nearest, farthest = offset_window(offsets, offset)
        if now + nearest < ends_at <= now + farthest:
            return offset
    return None


def delivery_retry_s(attempts: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff after ``attempts`` failed sends."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))
