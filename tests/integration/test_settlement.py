"""Settlement, on SQLite and PostgreSQL: renewals paid through a journalling sandbox settle clean,
and each way a settlement file or our data can disagree is reported in its own category."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways.sandbox_settlement import (
    JournalingGateway,
    SettlementJournal,
    settlement_csv,
)
from topup.domain.errors import InputError
from topup.entrypoints.worker import work_once
from topup.ports import PaymentCardDetails
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, renew
from topup.services.settlement import SettlementReport, settle

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"
GRACE_CARD = "+60123450001"
POSTPAID_CARD = "+60198765432"
REFUSED_BY_NETWORK = "+60123400000"  # the sandbox network refuses it: the worker refunds
DAY = dt.date(2026, 11, 25)  # START is 16:00 in Kuala Lumpur
WORK_ROUNDS_MAX = 20


@dataclass
class World:
    services: Services
    clock: FixedClock
    journal: Path
    renewals: dict[str, str]  # card -> renewal id

    def csv(self, day: dt.date = DAY) -> str:
        return settlement_csv(self.journal, day, self.services.profile.time_zone)

    async def payment_id(self, card: str) -> str:
        async with self.services.unit_of_work() as uow:
            payment = await uow.payments.for_renewal(self.renewals[card])
        return str(payment.id)


async def drain(services: Services) -> None:
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(services) == 0:
            return
    raise AssertionError("the worker still had work")


async def pay(services: Services, card: str, plan: str, key: str) -> str:
    view = await renew(services, RenewalRequest(card, plan, GOOD_CARD, idempotency_key=key))
    assert view.status == "activating", view.status
    return view.id


@pytest.fixture
async def world(make_app: AppFactory, tmp_path: Path) -> World:
    clock = FixedClock(START)
    application = make_app(clock=clock)
    services = application.services
    await load_demo(services)
    journal = tmp_path / "j.jsonl"
    services.gateway = JournalingGateway(
        services.gateway, SettlementJournal(journal), clock=clock.now
    )
    orders = {
        ACTIVE_CARD: "pack_5gb_7d",
        GRACE_CARD: "reload_10",
        POSTPAID_CARD: "postpaid_bill",
        REFUSED_BY_NETWORK: "reload_30",
    }
    renewals = {card: await pay(services, card, plan, card) for card, plan in orders.items()}
    await drain(services)
    return World(services, clock, journal, renewals)


async def settled(world: World, csv_text: str, **options: Any) -> SettlementReport:
    """Settle, and check that settling changed nothing."""
    before = await snapshot(world.services)
    report = await settle(world.services, csv_text, **options)
    assert await snapshot(world.services) == before
    return report


async def snapshot(services: Services) -> list[Any]:
    tables = (t.renewals, t.payments, t.ledger_entries, t.account_balances, t.jobs)
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        return [
            sorted(tuple(map(str, row)) for row in await connection.execute(select(table)))
            for table in tables
        ]


async def change(services: Services, statement: str, **values: Any) -> None:
    async with services.unit_of_work() as uow:
        await uow.connection.execute(text(statement), values)  # type: ignore[attr-defined]
        await uow.commit()


def only(report: SettlementReport, **expected: int) -> None:
    counts = {kind: count for kind, count in report.counts().items() if count}
    assert counts == expected, report.discrepancies


# --- clean ----------------------------------------------------------------------------------------


async def test_renewals_paid_activated_and_refunded_through_the_sandbox_settle_clean(
    world: World,
) -> None:
    csv_text = world.csv()
    report = await settled(world, csv_text)
    assert report.clean, report.discrepancies
    assert report.days == [DAY]
    assert (report.lines, report.matched) == (5, 5)  # four charges and one refund
    assert report.in_progress == []
    refund_lines = [line for line in csv_text.splitlines() if ",refund," in line]
    assert len(refund_lines) == 1
    assert await world.payment_id(REFUSED_BY_NETWORK) in refund_lines[0]
    totals = report.totals["MYR"]
    assert totals["refunds_minor"] == -3000
    assert (
        totals["net_minor"]
        == totals["charges_minor"] + totals["refunds_minor"] - (totals["fees_minor"])
    )
    assert (await audit(world.services)).clean


async def test_a_paid_renewal_whose_activation_is_under_way_is_in_progress_until_it_is_late(
    world: World,
) -> None:
    services = world.services
    late_after_s = services.limits.activation.activation_late_after_s
    world.renewals["again"] = await pay(services, ACTIVE_CARD, "reload_10", "again")
    report = await settled(world, world.csv())
    assert report.clean, report.discrepancies
    assert [finding.renewal_id for finding in report.in_progress] == [world.renewals["again"]]
    world.clock.advance(late_after_s - 1)
    assert (await settled(world, world.csv())).clean
    world.clock.advance(1)
    report = await settled(world, world.csv())
    only(report, paid_not_activated=1)
    assert report.discrepancies[0].renewal_id == world.renewals["again"]
    assert "activating" in report.discrepancies[0].detail


# --- a settlement file that disagrees -------------------------------------------------------------

Corruption = Callable[[list[str], dict[str, str]], list[str]]


def line_of(lines: list[str], payment_id: str, kind: str = "charge") -> int:
    [index] = [i for i, line in enumerate(lines) if f",{payment_id},{kind}," in line]
    return index


def drop(card: str, kind: str = "charge") -> Corruption:
    def corrupt(lines: list[str], payments: dict[str, str]) -> list[str]:
        del lines[line_of(lines, payments[card], kind)]
        return lines

    return corrupt


def edit(card: str, column: int, value: Callable[[str], str]) -> Corruption:
    def corrupt(lines: list[str], payments: dict[str, str]) -> list[str]:
        index = line_of(lines, payments[card])
        fields = lines[index].split(",")
        fields[column] = value(fields[column])
        if column == 4:  # keep net = amount - fee, or the file itself is invalid
            fields[7] = str(int(fields[4]) - int(fields[6]))
        lines[index] = ",".join(fields)
        return lines

    return corrupt


def duplicate(card: str) -> Corruption:
    def corrupt(lines: list[str], payments: dict[str, str]) -> list[str]:
        return [*lines, lines[line_of(lines, payments[card])]]

    return corrupt


def add_unknown_line(lines: list[str], payments: dict[str, str]) -> list[str]:
    return [*lines, "2026-11-25,ch_sbx_nobody,pay-nobody,charge,1000,MYR,15,985"]


def add_refund(card: str) -> Corruption:
    def corrupt(lines: list[str], payments: dict[str, str]) -> list[str]:
        fields = lines[line_of(lines, payments[card])].split(",")
        amount = -int(fields[4])
        refund = [fields[0], "re_sbx_unexpected", fields[2], "refund", str(amount)]
        return [*lines, ",".join([*refund, fields[5], "0", str(amount)])]

    return corrupt


@pytest.mark.parametrize(
    ("corrupt", "kind", "card"),
    [
        pytest.param(drop(ACTIVE_CARD), "activated_not_paid", ACTIVE_CARD, id="charge dropped"),
        pytest.param(
            drop(REFUSED_BY_NETWORK),
            "captured_not_settled",
            REFUSED_BY_NETWORK,
            id="charge of the refunded renewal dropped",
        ),
        pytest.param(
            drop(REFUSED_BY_NETWORK, "refund"),
            "refund_mismatch",
            REFUSED_BY_NETWORK,
            id="refund dropped",
        ),
        pytest.param(
            edit(GRACE_CARD, 4, lambda amount: str(int(amount) + 1)),
            "amount_mismatch",
            GRACE_CARD,
            id="amount changed",
        ),
        pytest.param(
            edit(GRACE_CARD, 5, lambda currency: "SGD"),
            "amount_mismatch",
            GRACE_CARD,
            id="currency changed",
        ),
        pytest.param(add_unknown_line, "unknown_line", None, id="unknown line added"),
        pytest.param(duplicate(POSTPAID_CARD), "duplicate_line", None, id="line duplicated"),
        pytest.param(
            add_refund(ACTIVE_CARD), "refund_mismatch", ACTIVE_CARD, id="refund we never made"
        ),
    ],
)
async def test_a_settlement_file_that_disagrees_is_reported_in_its_category(
    world: World, corrupt: Corruption, kind: str, card: str | None
) -> None:
    payments = {card: await world.payment_id(card) for card in world.renewals}
    lines = corrupt(world.csv().splitlines(), payments)
    report = await settled(world, "\n".join(lines) + "\n")
    only(report, **{kind: 1})
    [finding] = report.discrepancies
    if card is not None:
        assert (finding.payment_id, finding.renewal_id) == (payments[card], world.renewals[card])
    assert finding.detail


async def test_an_empty_file_for_a_day_we_captured_on_reports_every_payment(world: World) -> None:
    header = world.csv().splitlines()[0] + "\n"
    for report in (await settled(world, header, day=DAY), await settled(world, header)):
        only(report, activated_not_paid=3, captured_not_settled=1, refund_mismatch=1)
        assert (report.days, report.lines) == ([DAY], 0)  # without a day: the operator's today
    assert (await settled(world, header, day=DAY + dt.timedelta(days=1))).clean


async def test_payments_captured_on_another_day_are_not_expected_in_this_days_file(
    world: World,
) -> None:
    world.clock.advance(24 * 3600)
    world.renewals["tomorrow"] = await pay(world.services, ACTIVE_CARD, "reload_10", "tomorrow")
    await drain(world.services)
    assert (await settled(world, world.csv())).clean
    tomorrow = await settled(world, world.csv(DAY + dt.timedelta(days=1)))
    assert tomorrow.clean and tomorrow.matched == 1


async def test_a_bad_settlement_file_is_refused_before_anything_is_matched(world: World) -> None:
    lines = world.csv().splitlines()
    lines[2] = lines[2].replace(",MYR,", ",MYR,x,")
    with pytest.raises(InputError) as caught:
        await settle(world.services, "\n".join(lines))
    assert caught.value.code == "settlement_file_invalid"
    assert caught.value.params["line"] == "3"


# --- our data that disagrees ---------------------------------------------------------------------


async def test_our_payment_for_another_amount_than_settled_is_an_amount_mismatch(
    world: World,
) -> None:
    payment_id = await world.payment_id(ACTIVE_CARD)
    await change(
        world.services,
        "UPDATE payments SET amount_minor = amount_minor + 100 WHERE id = :id",
        id=payment_id,
    )
    report = await settled(world, world.csv())
    only(report, amount_mismatch=1)
    assert report.discrepancies[0].payment_id == payment_id


async def test_a_settled_charge_we_recorded_as_declined_is_paid_not_activated(
    world: World,
) -> None:
    renewal_id = world.renewals[GRACE_CARD]
    await change(
        world.services, "UPDATE renewals SET status = 'declined' WHERE id = :id", id=renewal_id
    )
    await change(
        world.services,
        "UPDATE payments SET status = 'declined' WHERE renewal_id = :id",
        id=renewal_id,
    )
    report = await settled(world, world.csv())
    only(report, paid_not_activated=1)
    assert report.discrepancies[0].renewal_id == renewal_id
    assert "declined" in report.discrepancies[0].detail


async def test_a_line_matched_only_by_its_reference_still_settles(world: World) -> None:
    lines = world.csv().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    for fields in rows:
        fields[2] = ""  # the gateway did not echo our payment id
    report = await settled(world, "\n".join([header, *(",".join(f) for f in rows)]))
    assert report.clean, report.discrepancies
    assert report.matched == 5
