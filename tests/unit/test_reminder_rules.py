"""The rules of reminders, without a database: offsets and their windows, kinds' stored names,
quiet hours across midnight, time zones and clock changes, the profile's [reminders] table, and
the card-event cursor's gaps."""

from __future__ import annotations

import datetime as dt

import pytest

from topup.adapters.profiles import load_profile
from topup.domain.errors import InputError
from topup.domain.profile_loading import profile_from_toml
from topup.domain.reminders import (
    QuietHours,
    ReminderChannel,
    ReminderKind,
    ReminderPolicy,
    due_offset,
    kind_name,
    offset_window,
    parse_kind_name,
    policy_from_table,
    readable_events,
)

END = dt.datetime(2026, 12, 10, 16, 0, tzinfo=dt.UTC)  # midnight in Kuala Lumpur
DAY = dt.timedelta(days=1)
KL = "Asia/Kuala_Lumpur"
NIGHT = QuietHours.parse("21:00-08:00")


def test_each_offset_is_due_in_its_own_window_and_a_missed_one_is_not_sent_late() -> None:
    offsets = (3, 1)
    assert offset_window(offsets, 3) == (DAY, 3 * DAY)
    assert offset_window(offsets, 1) == (dt.timedelta(0), DAY)
    assert due_offset(offsets, END, END - 4 * DAY) is None
    assert due_offset(offsets, END, END - 3 * DAY) == 3
    assert due_offset(offsets, END, END - 2 * DAY) == 3
    # A day before the end the 3-day reminder is no longer due: the 1-day one is.
    assert due_offset(offsets, END, END - DAY) == 1
    assert due_offset(offsets, END, END - dt.timedelta(hours=1)) == 1
    assert due_offset(offsets, END, END) is None


def test_a_date_driven_kind_is_stored_with_its_offset_and_a_problem_with_its_code() -> None:
    assert kind_name(ReminderKind.VALIDITY_ENDING, 3) == "validity_ending_3d"
    assert parse_kind_name("validity_ending_3d") == (ReminderKind.VALIDITY_ENDING, 3)
    assert parse_kind_name("grace_ending_1d") == (ReminderKind.GRACE_ENDING, 1)
    assert parse_kind_name("data_low") == (ReminderKind.DATA_LOW, None)
    problem = kind_name(ReminderKind.AUTO_RENEWAL_PROBLEM, problem="plan_withdrawn")
    assert problem == "auto_renewal_problem:plan_withdrawn"
    assert parse_kind_name(problem) == (ReminderKind.AUTO_RENEWAL_PROBLEM, None)


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        ("20:59", False),
        ("21:00", True),
        ("23:30", True),
        ("00:00", True),
        ("07:59", True),
        ("08:00", False),
        ("12:00", False),
    ],
)
def test_quiet_hours_cross_midnight(local: str, quiet: bool) -> None:
    hour, minute = (int(part) for part in local.split(":"))
    assert NIGHT.contains(dt.time(hour, minute)) is quiet


def test_a_message_due_in_the_evening_waits_until_the_next_morning_in_the_profiles_zone() -> None:
    evening = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC)  # 22:30 in Kuala Lumpur
    assert NIGHT.next_allowed(evening, KL) == dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC)
    after_midnight = dt.datetime(2026, 12, 1, 17, 0, tzinfo=dt.UTC)  # 01:00 the next day
    assert NIGHT.next_allowed(after_midnight, KL) == dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC)
    afternoon = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)  # 14:00
    assert NIGHT.next_allowed(afternoon, KL) == afternoon
    # The same instant is daytime in Jakarta's zone? 22:30 KL is 21:30 in Jakarta: quiet too,
    # and it ends at 08:00 Jakarta time, an hour after Kuala Lumpur's.
    assert NIGHT.next_allowed(evening, "Asia/Jakarta") == dt.datetime(
        2026, 12, 2, 1, 0, tzinfo=dt.UTC
    )
    # 20:30 in Jakarta is 21:30 in Kuala Lumpur: quiet in one zone, not in the other.
    early = dt.datetime(2026, 12, 1, 13, 30, tzinfo=dt.UTC)
    assert NIGHT.next_allowed(early, "Asia/Jakarta") == early
    assert NIGHT.next_allowed(early, KL) > early


def test_quiet_hours_end_by_the_wall_clock_across_a_daylight_saving_change() -> None:
    # London moves its clocks forward on 29 March 2026 at 01:00 UTC.
    before = dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC)  # 22:00 GMT
    ends = NIGHT.next_allowed(before, "Europe/London")
    assert ends == dt.datetime(2026, 3, 29, 7, 0, tzinfo=dt.UTC)  # 08:00 BST


def test_quiet_hours_within_a_day_and_none() -> None:
    lunch = QuietHours.parse("12:00-13:00")
    assert lunch.contains(dt.time(12, 30)) and not lunch.contains(dt.time(13, 0))
    assert not QuietHours.parse("08:00-08:00").contains(dt.time(8, 0))
    with pytest.raises(ValueError, match="21:00-08:00"):
        QuietHours.parse("9pm-8am")


def test_only_the_quiet_channels_wait() -> None:
    policy = ReminderPolicy()
    evening = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC)
    assert policy.send_at(ReminderChannel.SMS, evening, KL) > evening
    assert policy.send_at(ReminderChannel.PUSH, evening, KL) > evening
    assert policy.send_at(ReminderChannel.EMAIL, evening, KL) == evening


def test_the_profile_configures_offsets_and_quiet_hours() -> None:
    policy = policy_from_table(
        {"validity_ending_days": [1, 7, 3], "quiet_hours": "22:00-07:30", "quiet_channels": ["sms"]}
    )
    assert policy.validity_ending_days == (7, 3, 1)
    assert policy.grace_ending_days == (3,)
    assert policy.quiet_hours == QuietHours(dt.time(22, 0), dt.time(7, 30))
    assert policy.quiet_channels == frozenset({ReminderChannel.SMS})
    assert policy_from_table({"quiet_hours": ""}).quiet_hours is None
    shipped = load_profile("my").reminders
    assert shipped.validity_ending_days == (3, 1)
    assert shipped.quiet_hours == NIGHT


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"validity_ending_days": [0]}, "reminders.validity_ending_days"),
        ({"validity_ending_days": [3, 3]}, "reminders.validity_ending_days"),
        ({"validity_ending_days": "3"}, "reminders.validity_ending_days"),
        ({"quiet_hours": "25:00-08:00"}, "reminders.quiet_hours"),
        ({"quiet_channels": ["fax"]}, "reminders.quiet_channels"),
        ({"offsets": [3]}, "reminders.offsets"),
    ],
)
def test_a_wrong_reminders_table_names_its_field(table: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as raised:
        policy_from_table(table)
    assert raised.value.code == "invalid_profile"
    assert raised.value.field == field


def test_a_profile_file_with_a_reminders_table_loads() -> None:
    text = load_profile_text("my").replace(
        'quiet_hours = "21:00-08:00"', 'quiet_hours = "22:00-06:00"'
    )
    assert profile_from_toml(text).reminders.quiet_hours == QuietHours(dt.time(22), dt.time(6))


def load_profile_text(code: str) -> str:
    from importlib.resources import files

    return files("topup").joinpath("profiles", f"{code}.toml").read_text("utf-8")


NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
WAIT = dt.timedelta(seconds=60)


def test_the_cursor_stops_at_a_fresh_gap_and_passes_an_old_one() -> None:
    fresh = NOW - dt.timedelta(seconds=5)
    old = NOW - dt.timedelta(seconds=120)
    assert readable_events([(1, fresh), (2, fresh), (3, fresh)], 0, now=NOW, gap_wait=WAIT) == 3
    # Id 3 is missing and 4 was written just now: 3 may still be committing.
    assert readable_events([(1, fresh), (2, fresh), (4, fresh)], 0, now=NOW, gap_wait=WAIT) == 2
    # ...but once 4 is older than the wait, 3 was rolled back: read on.
    assert readable_events([(1, old), (2, old), (4, old)], 0, now=NOW, gap_wait=WAIT) == 3
    assert readable_events([(7, fresh)], 5, now=NOW, gap_wait=WAIT) == 0
    assert readable_events([(6, fresh)], 5, now=NOW, gap_wait=WAIT) == 1
