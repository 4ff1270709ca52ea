"""The sandbox's settlement journal and the daily settlement file made from it, and how `topup
settle` reads such a file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from pathlib import Path

import pytest

from topup.adapters.gateways.sandbox import (
    AUTHENTICATION_ANSWER,
    CARD_TIMEOUT_CHARGE_TAKEN,
    SandboxGateway,
)
from topup.adapters.gateways.sandbox_settlement import (
    SANDBOX_FEE_BASIS_POINTS,
    SETTLEMENT_COLUMNS,
    JournalingGateway,
    MovementType,
    SettlementJournal,
    SettlementRecord,
    read_journal,
    sandbox_fee_minor,
    settlement_csv,
)
from topup.domain.errors import InputError
from topup.domain.money import Money
from topup.ports import ChargeRequest, GatewayOutcome, PaymentCardDetails, RefundOutcome
from topup.services.settlement import (
    SETTLEMENT_FILE_COLUMNS,
    parse_settlement_day,
    parse_settlement_file,
    settlement_text,
)

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)  # 16:00 in Kuala Lumpur
KUALA_LUMPUR = "Asia/Kuala_Lumpur"
DAY = dt.date(2026, 11, 25)
GOOD = "4242424242424242"
DECLINED = "4000000000000002"
NEEDS_PASSWORD = "4000000000003220"
HEADER = ",".join(SETTLEMENT_FILE_COLUMNS)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def sandbox(clock: Clock) -> SandboxGateway:
    return SandboxGateway(secret=b"settlement-test", clock=clock)


async def charge_request(
    gateway: SandboxGateway, payment_id: str, number: str = GOOD, amount_minor: int = 1000
) -> ChargeRequest:
    payment_token = await gateway.tokenize(PaymentCardDetails(number, 12, 2030, "123"))
    return ChargeRequest(
        payment_id=payment_id,
        token=payment_token.token,
        amount=Money(amount_minor, "MYR"),
        description="settlement test",
        requested_at=NOW,
    )


def journalled(path: Path) -> list[SettlementRecord]:
    return list(read_journal(path))


def settlement_rows(path: Path, day: dt.date = DAY) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(settlement_csv(path, day, KUALA_LUMPUR))))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "journal" / "settlements.jsonl"


# --- the journal ------------------------------------------------------------------------------


async def test_a_charge_is_journalled_once_however_often_it_is_asked_about(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    gateway = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    request = await charge_request(inner, "pay-1")
    assert (await gateway.charge(request)).outcome is GatewayOutcome.SUCCEEDED
    for _ in range(3):
        clock.now += dt.timedelta(minutes=1)
        assert (await gateway.retrieve(request)).outcome is GatewayOutcome.SUCCEEDED
    [record] = journalled(journal_path)
    assert record.type is MovementType.CHARGE
    assert (record.payment_id, record.amount_minor, record.currency) == ("pay-1", 1000, "MYR")
    assert record.gateway_reference.startswith("ch_sbx_")
    assert record.at == NOW


async def test_charges_that_took_no_money_are_not_journalled(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    gateway = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    declined = await charge_request(inner, "pay-declined", DECLINED)
    waiting = await charge_request(inner, "pay-waiting", NEEDS_PASSWORD)
    timed_out = await charge_request(inner, "pay-timeout", CARD_TIMEOUT_CHARGE_TAKEN)
    assert (await gateway.charge(declined)).outcome is GatewayOutcome.DECLINED
    assert (await gateway.charge(waiting)).outcome is GatewayOutcome.PENDING
    assert (await gateway.confirm(waiting, "000000")).outcome is GatewayOutcome.DECLINED
    assert (await gateway.charge(timed_out)).outcome is GatewayOutcome.UNKNOWN
    assert journalled(journal_path) == []
    assert (await gateway.confirm(waiting, AUTHENTICATION_ANSWER)).outcome.value == "succeeded"
    assert (await gateway.retrieve(timed_out)).outcome is GatewayOutcome.SUCCEEDED
    assert [record.payment_id for record in journalled(journal_path)] == [
        "pay-waiting",
        "pay-timeout",
    ]


async def test_a_refund_is_journalled_with_a_negative_amount(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    gateway = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    request = await charge_request(inner, "pay-1", amount_minor=2550)
    await gateway.charge(request)
    for _ in range(2):  # a refund sent again with the same id is one refund
        result = await gateway.refund(refund_id="refund-r1", charge=request)
        assert result.outcome is RefundOutcome.SUCCEEDED
    refund = journalled(journal_path)[-1]
    assert len(journalled(journal_path)) == 2
    assert (refund.type, refund.payment_id, refund.amount_minor) == (
        MovementType.REFUND,
        "pay-1",
        -2550,
    )
    assert refund.gateway_reference == result.gateway_reference


async def test_a_refund_of_a_charge_that_took_nothing_is_not_journalled(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    gateway = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    request = await charge_request(inner, "pay-declined", DECLINED)
    assert (await gateway.refund(refund_id="r", charge=request)).outcome is RefundOutcome.FAILED
    assert journalled(journal_path) == []


def test_the_journal_is_created_with_its_directory(journal_path: Path) -> None:
    journal = SettlementJournal(journal_path)
    journal.close()
    assert journal_path.exists()
    assert journal_path.read_text() == ""


def test_several_writers_appending_at_once_leave_whole_lines(journal_path: Path) -> None:
    writers = [SettlementJournal(journal_path) for _ in range(4)]
    records_per_writer = 300

    def write(index: int, journal: SettlementJournal) -> None:
        for number in range(records_per_writer):
            journal.append(
                SettlementRecord(
                    MovementType.CHARGE,
                    f"pay-{index}-{number}",
                    f"ch-{index}-{number}",
                    1,
                    "MYR",
                    NOW,
                )
            )

    threads = [
        threading.Thread(target=write, args=(index, journal))
        for index, journal in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = journalled(journal_path)
    assert len(records) == len(writers) * records_per_writer
    assert len({record.payment_id for record in records}) == len(records)


def test_a_damaged_journal_line_is_named(journal_path: Path) -> None:
    journal = SettlementJournal(journal_path)
    journal.append(SettlementRecord(MovementType.CHARGE, "pay-1", "ch-1", 1000, "MYR", NOW))
    with journal_path.open("a") as handle:
        handle.write('{"type": "charge", "payment_id": "pay-2"\n')
    with pytest.raises(InputError) as caught:
        settlement_csv(journal_path, DAY, KUALA_LUMPUR)
    assert caught.value.code == "settlement_journal_invalid"
    assert caught.value.params["line"] == "2"


def test_a_missing_journal_is_reported_by_its_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        settlement_csv(tmp_path / "nowhere.jsonl", DAY, KUALA_LUMPUR)
    assert caught.value.code == "settlement_journal_unreadable"
    assert caught.value.params["path"].endswith("nowhere.jsonl")


# --- the settlement file ---------------------------------------------------------------------


async def test_the_file_lists_each_charge_once_when_several_processes_journalled_it(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    web = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    request = await charge_request(inner, "pay-1")
    await web.charge(request)
    clock.now += dt.timedelta(minutes=5)
    worker = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    await worker.retrieve(request)  # the worker does not know the web server journalled it
    assert len(journalled(journal_path)) == 2
    [row] = settlement_rows(journal_path)
    assert row["payment_id"] == "pay-1"
    assert row["type"] == "charge"


async def test_a_process_that_forgot_what_it_wrote_writes_again_and_the_file_still_lists_it_once(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    gateway = JournalingGateway(
        inner, SettlementJournal(journal_path), clock=clock, remembered_max=2
    )
    requests = [await charge_request(inner, f"pay-{number}") for number in range(3)]
    for request in requests:
        await gateway.charge(request)
    await gateway.retrieve(requests[0])  # forgotten: the oldest of three, two remembered
    await gateway.retrieve(requests[2])  # remembered
    assert len(journalled(journal_path)) == 4
    assert sorted(row["payment_id"] for row in settlement_rows(journal_path)) == [
        "pay-0",
        "pay-1",
        "pay-2",
    ]


async def test_charges_pay_the_fee_and_refunds_are_negative_without_one(
    clock: Clock, journal_path: Path
) -> None:
    inner = sandbox(clock)
    gateway = JournalingGateway(inner, SettlementJournal(journal_path), clock=clock)
    request = await charge_request(inner, "pay-1", amount_minor=1000)
    await gateway.charge(request)
    clock.now += dt.timedelta(hours=1)
    refund = await gateway.refund(refund_id="refund-1", charge=request)
    text = settlement_csv(journal_path, DAY, KUALA_LUMPUR)
    assert text.splitlines()[0] == ",".join(SETTLEMENT_COLUMNS)
    charge_row, refund_row = settlement_rows(journal_path)
    assert charge_row == {
        "settlement_date": "2026-11-25",
        "gateway_reference": charge_row["gateway_reference"],
        "payment_id": "pay-1",
        "type": "charge",
        "amount_minor": "1000",
        "currency": "MYR",
        "fee_minor": "15",
        "net_minor": "985",
    }
    assert (refund_row["type"], refund_row["amount_minor"]) == ("refund", "-1000")
    assert (refund_row["fee_minor"], refund_row["net_minor"]) == ("0", "-1000")
    assert refund_row["gateway_reference"] == refund.gateway_reference


@pytest.mark.parametrize(
    ("amount_minor", "fee_minor"),
    [
        (1000, 15),  # 15.0
        (100, 2),  # 1.5: half rounds up
        (300, 5),  # 4.5
        (33, 0),  # 0.495
        (34, 1),  # 0.51
        (1, 0),
        (8800, 132),
        (9_999_999_999, 150_000_000),  # 149999999.985
        (1_152_921_504_606_847_009, 17_293_822_569_102_705),  # a float would give ...704
    ],
)
def test_the_fee_is_one_and_a_half_percent_rounded_half_up_in_integers(
    amount_minor: int, fee_minor: int
) -> None:
    assert SANDBOX_FEE_BASIS_POINTS == 150
    fee = sandbox_fee_minor(amount_minor)
    assert type(fee) is int
    assert fee == fee_minor


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (dt.datetime(2026, 11, 24, 15, 59, 59, tzinfo=dt.UTC), dt.date(2026, 11, 24)),
        (dt.datetime(2026, 11, 24, 16, 0, 0, tzinfo=dt.UTC), dt.date(2026, 11, 25)),
        (dt.datetime(2026, 11, 25, 15, 59, 59, tzinfo=dt.UTC), dt.date(2026, 11, 25)),
        (dt.datetime(2026, 11, 25, 16, 0, 0, tzinfo=dt.UTC), dt.date(2026, 11, 26)),
    ],
)
def test_a_movement_is_settled_on_its_day_in_the_operators_time_zone(
    journal_path: Path, at: dt.datetime, day: dt.date
) -> None:
    SettlementJournal(journal_path).append(
        SettlementRecord(MovementType.CHARGE, "pay-1", "ch-1", 1000, "MYR", at)
    )
    for other in (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)):
        rows = settlement_rows(journal_path, other)
        assert [row["settlement_date"] for row in rows] == (
            [day.isoformat()] if other == day else []
        )
    in_utc = settlement_csv(journal_path, at.date(), "UTC")
    assert "pay-1" in in_utc


def test_a_charge_written_again_on_a_later_day_stays_on_its_first_day(journal_path: Path) -> None:
    journal = SettlementJournal(journal_path)
    journal.append(SettlementRecord(MovementType.CHARGE, "pay-1", "ch-1", 1000, "MYR", NOW))
    later = NOW + dt.timedelta(days=1)
    journal.append(SettlementRecord(MovementType.CHARGE, "pay-1", "ch-1", 1000, "MYR", later))
    assert len(settlement_rows(journal_path, DAY)) == 1
    assert settlement_rows(journal_path, DAY + dt.timedelta(days=1)) == []


def test_a_journal_record_reads_back_as_written() -> None:
    record = SettlementRecord(MovementType.REFUND, "pay-1", "re_sbx_1", -500, "IDR", NOW)
    assert SettlementRecord.from_json(record.to_json()) == record
    assert json.loads(record.to_json())["at"] == "2026-11-25T08:00:00+00:00"


# --- reading a settlement file (what `topup settle` checks before matching) ----------------------


def test_the_sandbox_writes_the_columns_settle_reads(journal_path: Path) -> None:
    assert SETTLEMENT_COLUMNS == SETTLEMENT_FILE_COLUMNS
    journal = SettlementJournal(journal_path)
    journal.append(SettlementRecord(MovementType.CHARGE, "pay-1", "ch-1", 1000, "MYR", NOW))
    journal.append(SettlementRecord(MovementType.REFUND, "pay-1", "re-1", -1000, "MYR", NOW))
    lines = parse_settlement_file(settlement_csv(journal_path, DAY, KUALA_LUMPUR))
    assert [(line.number, line.type, line.amount_minor, line.fee_minor) for line in lines] == [
        (2, "charge", 1000, 15),
        (3, "refund", -1000, 0),
    ]


GOOD_LINE = "2026-11-25,ch_sbx_1,pay-1,charge,1000,MYR,15,985"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param("", "1", "empty", id="empty file"),
        pytest.param("date,reference\n" + GOOD_LINE, "1", "header", id="wrong header"),
        pytest.param(f"{HEADER}\n{GOOD_LINE}\n{GOOD_LINE},x\n", "3", "9 fields", id="extra field"),
        pytest.param(
            f"{HEADER}\n{GOOD_LINE.replace('2026-11-25', '25/11/2026')}", "2", "YYYY", id="date"
        ),
        pytest.param(
            f"{HEADER}\n{GOOD_LINE.replace('2026-11-25', '2026-02-30')}",
            "2",
            "not a date",
            id="no such day",
        ),
        pytest.param(
            f"{HEADER}\n\n{GOOD_LINE.replace('1000', '10.00')}", "3", "whole number", id="decimal"
        ),
        pytest.param(
            f"{HEADER}\n{GOOD_LINE.replace('charge', 'payout')}", "2", "type", id="unknown type"
        ),
        pytest.param(
            f"{HEADER}\n{GOOD_LINE.replace('MYR', 'myr')}", "2", "currency", id="currency"
        ),
        pytest.param(f"{HEADER}\n{GOOD_LINE.replace('985', '986')}", "2", "net", id="net"),
        pytest.param(
            f"{HEADER}\n{GOOD_LINE.replace(',1000,', ',-1000,').replace('985', '-1015')}",
            "2",
            "positive",
            id="negative charge",
        ),
        pytest.param(
            f"{HEADER}\n{GOOD_LINE.replace('ch_sbx_1', 'ch sbx')}", "2", "spaces", id="reference"
        ),
        pytest.param(f'{HEADER}\n{GOOD_LINE}\n"unclosed', "3", "CSV", id="not csv"),
    ],
)
def test_a_bad_settlement_file_is_refused_with_its_line(text: str, line: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_settlement_file(text)
    assert caught.value.code == "settlement_file_invalid"
    assert caught.value.params["line"] == line
    assert problem in caught.value.params["problem"]


def test_a_file_that_is_not_utf8_is_refused_with_the_line_of_the_bad_byte() -> None:
    data = f"{HEADER}\n{GOOD_LINE}\n".encode() + b"2026-11-25,ch_\xff\n"
    with pytest.raises(InputError) as caught:
        settlement_text(data)
    assert caught.value.params["line"] == "3"
    assert settlement_text(b"\xef\xbb\xbf" + HEADER.encode()) == HEADER


def test_a_file_covering_too_many_days_is_refused() -> None:
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=number) for number in range(32)]
    lines = [GOOD_LINE.replace("2026-11-25", day.isoformat()).replace("ch_sbx_1", f"ch{n}")
             for n, day in enumerate(days)]  # fmt: skip
    with pytest.raises(InputError) as caught:
        parse_settlement_file("\n".join([HEADER, *lines]))
    assert caught.value.params["line"] == "33"


@pytest.mark.parametrize("text", ["2026-13-01", "25/11/2026", "20261125", "", "yesterday"])
def test_a_settlement_date_is_written_year_month_day(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_settlement_day(text)
    assert caught.value.code == "settlement_date_invalid"
    assert parse_settlement_day(" 2026-11-25 ") == DAY
