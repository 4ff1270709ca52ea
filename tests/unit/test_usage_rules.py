"""Usage rules: thresholds once per period, records of an earlier period, reading files by line."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from topup.adapters.profiles import load_profile
from topup.domain.card_events import CardEventKind, validity_period
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InputError, WebhookError
from topup.domain.money import Money
from topup.domain.usage import (
    RECORD_ID_LENGTH_MAX,
    RecordOutcome,
    UsageState,
    card_outcome,
    counted_from,
    counts_against_period,
    debit,
    wants_data_barred,
)
from topup.domain.usage_files import (
    RECORD_LINE_BYTES_MAX,
    LineProblem,
    UsageFormat,
    UsageReader,
    detect_format,
)
from topup.domain.usage_signatures import SIGNATURE_HEADER, sign, verify

NOW = dt.datetime(2026, 12, 4, 8, 0, tzinfo=dt.UTC)
VALIDITY_END = NOW + dt.timedelta(days=10)
MALAYSIA = load_profile("my")
ACTIVE = CardStatus.ACTIVE
HEADER_LINE = "record_id,card,used_at,data_used_mb\n"


def prepaid(quota_mb: int = 1000, validity_end: dt.datetime = VALIDITY_END) -> Card:
    return Card(
        id="card_1",
        msisdn="+60123456789",
        iccid="8960012345678901234",
        kind=CardKind.PREPAID,
        status=CardStatus.ACTIVE,
        currency="MYR",
        credit=Money(500, "MYR"),
        data_quota_mb=quota_mb,
        validity_end=validity_end,
        bill_due=Money.zero("MYR"),
        bill_due_date=None,
    )


def test_usage_debits_the_quota_and_never_below_zero() -> None:
    card = prepaid(100)
    result = debit(
        card, None, period=validity_period(card), used_mb=250, low_percent=20, status=ACTIVE
    )
    assert result.card.data_quota_mb == 0
    assert [event.kind for event in result.events] == [CardEventKind.DATA_EXHAUSTED]
    assert result.events[0].detail["period"] == validity_period(card)
    assert result.events[0].detail["data_quota_mb"] == 0


def test_data_low_is_raised_once_per_period_when_a_fifth_is_left() -> None:
    card = prepaid(1000)
    period = validity_period(card)
    first = debit(card, None, period=period, used_mb=700, low_percent=20, status=ACTIVE)
    assert first.events == ()  # 300 MB left of 1000: 30 %
    second = debit(
        first.card, first.state, period=period, used_mb=150, low_percent=20, status=ACTIVE
    )
    assert [event.kind for event in second.events] == [CardEventKind.DATA_LOW]
    assert second.events[0].detail == {
        "period": period,
        "data_quota_mb": 150,
        "period_quota_mb": 1000,
        "percent": 15,
    }
    third = debit(
        second.card, second.state, period=period, used_mb=50, low_percent=20, status=ACTIVE
    )
    assert third.events == ()  # still low, already said in this period


def test_exhausted_is_raised_once_per_period_and_bars_a_prepaid_card() -> None:
    card = prepaid(100)
    period = validity_period(card)
    first = debit(card, None, period=period, used_mb=100, low_percent=20, status=ACTIVE)
    assert [event.kind for event in first.events] == [CardEventKind.DATA_EXHAUSTED]
    assert first.state.data_barred and first.state.network_pending
    again = debit(first.card, first.state, period=period, used_mb=10, low_percent=20, status=ACTIVE)
    assert again.events == ()
    assert wants_data_barred(first.card)


def test_a_new_period_starts_from_the_quota_then_and_may_raise_thresholds_again() -> None:
    card = prepaid(100)
    exhausted = debit(
        card, None, period=validity_period(card), used_mb=100, low_percent=20, status=ACTIVE
    )
    renewed = prepaid(5120, validity_end=VALIDITY_END + dt.timedelta(days=7))
    period = validity_period(renewed)
    assert period != exhausted.state.period
    low = debit(
        renewed, exhausted.state, period=period, used_mb=5000, low_percent=20, status=ACTIVE
    )
    assert [event.kind for event in low.events] == [CardEventKind.DATA_LOW]
    assert low.state.period_quota_mb == 5120 and low.state.used_mb == 5000


def test_records_used_before_the_period_began_do_not_count() -> None:
    began = NOW - dt.timedelta(hours=1)
    assert not counts_against_period(began - dt.timedelta(seconds=1), began)
    assert counts_against_period(began, began)
    assert counts_against_period(NOW - dt.timedelta(days=400), None)


def test_records_out_of_order_sum_the_same() -> None:
    card = prepaid(1000)
    period = validity_period(card)
    state: UsageState | None = None
    for used in (300, 100, 200):  # whatever order they come in
        result = debit(card, state, period=period, used_mb=used, low_percent=20, status=ACTIVE)
        card, state = result.card, result.state
    assert card.data_quota_mb == 400
    assert state is not None and state.used_mb == 600


def reader() -> UsageReader:
    return UsageReader(MALAYSIA, now=NOW, future_skew_s=300, data_used_mb_max=1000)


def test_a_csv_file_reports_each_bad_line_by_number_and_reads_the_rest() -> None:
    lines = [
        "record_id,card,used_at,data_used_mb\n",
        "r1,+60123456789,2026-12-04T07:00:00Z,10\n",
        "r2,012-345 6789,2026-12-04T15:00:00+08:00,5\n",
        "r3,not a number,2026-12-04T07:00:00Z,5\n",
        "\n",
        "r4,+60123456789,yesterday,5\n",
        "r5,+60123456789,2026-12-04T07:00:00Z,-3\n",
        "r6,+60123456789,2026-12-05T07:00:00Z,1\n",
        ",+60123456789,2026-12-04T07:00:00Z,1\n",
        "r8,+60123456789\n",
        "r9,8960012345678901234,2026-12-04T07:00:00Z,2000\n",
    ]
    items = list(reader().read(lines, UsageFormat.CSV))
    good = [item for item in items if not isinstance(item, LineProblem)]
    bad = [(item.line, item.code) for item in items if isinstance(item, LineProblem)]
    assert [(line, record_id, card) for line, record_id, card, _, _ in good] == [
        (2, "r1", "+60123456789"),
        (3, "r2", "+60123456789"),
    ]
    assert good[1][3] == dt.datetime(2026, 12, 4, 7, 0, tzinfo=dt.UTC)
    assert bad == [
        (4, "usage_card_invalid"),
        (6, "usage_time_invalid"),
        (7, "usage_data_invalid"),
        (8, "usage_time_in_future"),
        (9, "usage_record_id_invalid"),
        (10, "usage_line_malformed"),
        (11, "usage_data_invalid"),
    ]


def test_json_lines_are_read_and_a_line_that_is_not_an_object_is_malformed() -> None:
    lines = [
        '{"record_id": "a", "card": "+60123456789", "used_at": "2026-12-04T07:00:00Z", '
        '"data_used_mb": 7}',
        "[1, 2]",
        "{not json",
        '{"record_id": "b", "card": "+60123456789", "used_at": "2026-12-04T07:00:00Z", '
        '"data_used_mb": true}',
    ]
    items = list(reader().read(lines, UsageFormat.JSON_LINES))
    assert not isinstance(items[0], LineProblem) and items[0][4] == 7
    assert [(item.line, item.code) for item in items[1:] if isinstance(item, LineProblem)] == [
        (2, "usage_line_malformed"),
        (3, "usage_line_malformed"),
        (4, "usage_data_invalid"),
    ]


def test_a_csv_file_without_its_header_is_refused_whole() -> None:
    with pytest.raises(InputError) as refused:
        list(reader().read(["r1,+60123456789,2026-12-04T07:00:00Z,10\n"], UsageFormat.CSV))
    assert refused.value.code == "usage_header_invalid"


def test_the_format_is_told_by_extension_then_by_content() -> None:
    assert detect_format("cdr.csv", "{") is UsageFormat.CSV
    assert detect_format("cdr.JSONL", "record_id") is UsageFormat.JSON_LINES
    assert detect_format("cdr.txt", ' {"record_id"') is UsageFormat.JSON_LINES
    assert detect_format("cdr.txt", "record_id,card") is UsageFormat.CSV


def test_a_signature_is_checked_over_the_body_and_its_age() -> None:
    secret, body = b"secret", b'{"record_id": "a"}\n'
    header = {SIGNATURE_HEADER: sign(secret, body, at=NOW)}
    assert verify(secret, body, header, now=NOW, tolerance_s=300)
    cases = {
        "usage_signature_missing": ({}, NOW),
        "usage_signature_invalid": ({SIGNATURE_HEADER: sign(b"other", body, at=NOW)}, NOW),
        "usage_signature_expired": (header, NOW + dt.timedelta(seconds=301)),
        "usage_timestamp_invalid": ({SIGNATURE_HEADER: "t=soon,v1=abc"}, NOW),
    }
    for code, (headers, now) in cases.items():
        with pytest.raises(WebhookError) as refused:
            verify(secret, body, headers, now=now, tolerance_s=300)
        assert refused.value.code == code
    with pytest.raises(WebhookError):
        verify(secret, body + b" ", header, now=NOW, tolerance_s=300)


def postpaid() -> Card:
    return Card(
        id="card_2",
        msisdn="+60198765432",
        iccid="8960012345678901235",
        kind=CardKind.POSTPAID,
        status=CardStatus.ACTIVE,
        currency="MYR",
        credit=Money.zero("MYR"),
        data_quota_mb=0,
        validity_end=None,
        bill_due=Money(8800, "MYR"),
        bill_due_date=NOW + dt.timedelta(days=5),
    )


def test_usage_on_a_postpaid_card_debits_nothing_and_raises_no_threshold() -> None:
    card = postpaid()
    result = debit(
        card, None, period=validity_period(card), used_mb=500, low_percent=20, status=card.status
    )
    assert result.card == card and result.events == () and result.state is None


def test_usage_on_an_expired_card_debits_nothing_and_raises_no_threshold() -> None:
    card = prepaid(300, validity_end=NOW - dt.timedelta(days=45))  # its row may still say active
    result = debit(
        card,
        None,
        period=validity_period(card),
        used_mb=300,
        low_percent=20,
        status=CardStatus.EXPIRED,
    )
    assert result.card == card and result.events == () and result.state is None


def test_a_card_with_no_quota_in_its_period_raises_no_threshold_but_stays_without_data() -> None:
    card = prepaid(0, validity_end=NOW - dt.timedelta(days=3))  # in grace, nothing left
    result = debit(
        card,
        None,
        period=validity_period(card),
        used_mb=21,
        low_percent=20,
        status=CardStatus.GRACE,
    )
    assert result.events == ()
    assert result.card.data_quota_mb == 0
    assert result.state is not None and result.state.data_barred  # R6: no data, no internet


def test_json_lines_must_carry_data_used_as_a_number_not_as_text() -> None:
    lines = [
        '{"record_id": "a", "card": "+60123456789", "used_at": "2026-12-04T07:00:00Z", '
        '"data_used_mb": "7"}',
        '{"record_id": "b", "card": "+60123456789", "used_at": "2026-12-04T07:00:00Z", '
        '"data_used_mb": 7.0}',
        '{"record_id": "c", "card": "+60123456789", "used_at": "2026-12-04T07:00:00Z", '
        '"data_used_mb": 7}',
    ]
    items = list(reader().read(lines, UsageFormat.JSON_LINES))
    assert [(item.line, item.code) for item in items if isinstance(item, LineProblem)] == [
        (1, "usage_data_invalid"),
        (2, "usage_data_invalid"),
    ]
    assert [item[0] for item in items if not isinstance(item, LineProblem)] == [3]
    csv_lines = [HEADER_LINE, "r1,+60123456789,2026-12-04T07:00:00Z, 7 \n"]  # a cell is text
    (only,) = reader().read(csv_lines, UsageFormat.CSV)
    assert not isinstance(only, LineProblem) and only[4] == 7


def test_a_record_of_the_longest_allowed_fields_fits_the_bytes_a_record_line_may_take() -> None:
    longest = {
        "record_id": "é" * RECORD_ID_LENGTH_MAX,  # escaped by json.dumps: six bytes each
        "card": "8960012345678901234",
        "used_at": "2026-12-04T15:00:00.123456+08:00",
        "data_used_mb": 1_048_576,
    }
    line = json.dumps(longest) + "\r\n"
    assert len(line.encode()) <= RECORD_LINE_BYTES_MAX
    assert len(json.dumps(longest, ensure_ascii=False).encode()) + 2 <= RECORD_LINE_BYTES_MAX


def test_records_count_from_the_period_start_of_a_debited_card_and_never_for_others() -> None:
    began = NOW - dt.timedelta(hours=1)
    debited = card_outcome(prepaid(), CardStatus.GRACE)
    assert debited is RecordOutcome.DEBITED
    assert counted_from(debited, began) == began
    assert counted_from(debited, None) <= NOW - dt.timedelta(days=10_000)
    assert card_outcome(postpaid(), CardStatus.ACTIVE) is RecordOutcome.POSTPAID
    gone = card_outcome(prepaid(), CardStatus.EXPIRED)
    assert gone is RecordOutcome.CARD_EXPIRED
    assert NOW + dt.timedelta(days=10_000) < counted_from(gone, None)
    assert NOW + dt.timedelta(days=10_000) < counted_from(RecordOutcome.POSTPAID, began)
