"""Fleets on SQLite and PostgreSQL: the same file twice renews nothing twice, two workers share
one run, a worker killed mid-run (a real `topup worker` process) resumes where it stopped, and
invoice numbers stay unique and sequential when issued concurrently."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from tests import conftest
from tests.conftest import AppFactory
from tests.e2e.commands import topup_executable
from tests.fleets import PLAN, lines_of, make_fleet, work_bulk
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.domain.auto_renewal import SetterKind, TopUpRule
from topup.domain.errors import TopupError
from topup.domain.fleets import BulkLineStatus
from topup.entrypoints.worker import work_once
from topup.ports import PaymentCardDetails
from topup.services import auto_renewal, saved_payment_cards
from topup.services.demo import load_demo
from topup.services.fleets import bulk, invoices, policy
from topup.settings import LimitSettings

CLOCK = FixedClock(conftest.START)  # every application of a test reads it
RECHECK_S = LimitSettings().bulk_waiting_recheck_s + 1


def _sync_engine(database_url: str):  # type: ignore[no-untyped-def]
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url)


def renewals_per_card(database_url: str) -> dict[str, int]:
    engine = _sync_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(t.renewals.c.card_id, func.count()).group_by(t.renewals.c.card_id)
            )
            return {row[0]: int(row[1]) for row in rows}
    finally:
        engine.dispose()


def line_statuses(database_url: str, run_id: str) -> dict[str, int]:
    engine = _sync_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(t.bulk_lines.c.status, func.count())
                .where(t.bulk_lines.c.run_id == run_id)
                .group_by(t.bulk_lines.c.status)
            )
            return {row[0]: int(row[1]) for row in rows}
    finally:
        engine.dispose()


async def drain(*applications_services: object, run_ids: list[str], organisation_id: str) -> None:
    """Workers (one per services given) process lines concurrently until every run finished."""
    services_list = list(applications_services)

    async def worker(services: object) -> None:
        for _ in range(200):
            done = await work_bulk(services)  # type: ignore[arg-type]
            finished = [
                (await bulk.run_progress(services, None, organisation_id, run_id)).finished  # type: ignore[arg-type]
                for run_id in run_ids
            ]
            if all(finished):
                return
            if not done:  # waiting lines are looked at again later: let that time come
                CLOCK.advance(RECHECK_S)
                await asyncio.sleep(0.05)
        raise AssertionError("the runs did not finish")

    await asyncio.gather(*(worker(services) for services in services_list))


async def test_the_same_file_uploaded_twice_renews_nothing_twice(make_app: AppFactory) -> None:
    first, second = make_app(clock=CLOCK), make_app(clock=CLOCK)
    await load_demo(first.services)
    fleet = await make_fleet(first.services, cards=30)
    text = lines_of(fleet.msisdns)
    one = await bulk.start_run(first.services, fleet.admin_id, fleet.organisation_id, text)
    # Started again before the first is worked on (the owner insists): the same keys.
    two = await bulk.start_run(
        second.services, fleet.owner_id, fleet.organisation_id, text, renew_again=True
    )
    await drain(
        first.services,
        second.services,
        run_ids=[one.id, two.id],
        organisation_id=fleet.organisation_id,
    )
    lines_one = await bulk.result_lines(first.services, None, fleet.organisation_id, one.id)
    lines_two = await bulk.result_lines(first.services, None, fleet.organisation_id, two.id)
    assert {line.status for line in lines_one + lines_two} == {BulkLineStatus.SUCCEEDED}
    assert [line.renewal_id for line in lines_one] == [line.renewal_id for line in lines_two]
    async with first.services.unit_of_work() as uow:
        renewals = await uow.renewals.get_many([line.renewal_id or "" for line in lines_one])
    assert len(renewals) == 30 and len({r.card_id for r in renewals.values()}) == 30
    # After the run (its renewals applied: the cards' periods, and keys, moved on), the same
    # file again: the database finds every card on a recent run; nothing to renew.
    checked = await bulk.dry_run(first.services, fleet.viewer_id, fleet.organisation_id, text)
    assert checked.renewed_recently == 30 and checked.total.is_zero
    started = two.created_at.astimezone(ZoneInfo(first.services.profile.time_zone))
    assert {line.problem_params["renewed_at"] for line in checked.lines} == {
        f"{started:%Y-%m-%d %H:%M}"  # the latest run's start, in the operator's time
    }
    asked = await bulk.dry_run(
        first.services, fleet.viewer_id, fleet.organisation_id, text, renew_again=True
    )
    assert asked.accepted == 30 and asked.already_renewed == 0 and asked.total.minor == 30 * 1000
    # Another organisation's runs, and runs older than the limit, do not count.
    CLOCK.advance(first.services.limits.fleets.bulk_renewed_recently_s)
    later = await bulk.dry_run(first.services, fleet.viewer_id, fleet.organisation_id, text)
    assert later.renewed_recently == 0 and later.accepted == 30


async def test_two_workers_share_one_run_and_renew_each_line_once(make_app: AppFactory) -> None:
    small = LimitSettings(bulk_batch_size=7, bulk_concurrency=3)
    first, second = make_app(limits=small, clock=CLOCK), make_app(limits=small, clock=CLOCK)
    await load_demo(first.services)
    fleet = await make_fleet(first.services, cards=60)
    run = await bulk.start_run(
        first.services, fleet.admin_id, fleet.organisation_id, lines_of(fleet.msisdns)
    )
    await drain(
        first.services, second.services, run_ids=[run.id], organisation_id=fleet.organisation_id
    )
    lines = await bulk.result_lines(first.services, None, fleet.organisation_id, run.id)
    assert {line.status for line in lines} == {BulkLineStatus.SUCCEEDED}
    assert len({line.renewal_id for line in lines}) == 60
    # Each line taken twice (renewed, then found applied), never by both workers at once.
    assert all(line.attempts == 2 for line in lines)


async def test_invoice_numbers_are_sequential_and_unique_when_issued_at_once(
    make_app: AppFactory,
) -> None:
    applications = [make_app(clock=CLOCK) for _ in range(4)]
    services = applications[0].services
    await load_demo(services)
    fleet = await make_fleet(services, cards=6)
    month = f"{services.clock.now():%Y-%m}"
    documents = []
    for part in (fleet.msisdns[:3], fleet.msisdns[3:]):
        run = await bulk.start_run(services, fleet.admin_id, fleet.organisation_id, lines_of(part))
        await drain(services, run_ids=[run.id], organisation_id=fleet.organisation_id)
        documents += await asyncio.gather(
            *(
                invoices.issue_invoice(
                    application.services, fleet.viewer_id, fleet.organisation_id, month
                )
                for application in applications
            )
        )
    numbers = [document.invoice.number for document in documents]
    # Each round: everyone gets the one invoice of the month's renewals as they are.
    assert len(set(numbers[:4])) == 1 and len(set(numbers[4:])) == 1
    assert numbers[0].endswith("-0001") and numbers[4].endswith("-0002")
    async with services.unit_of_work() as uow:
        issued = await uow.organisations.invoices(fleet.organisation_id, limit=10)
    assert [invoice.sequence for invoice in issued] == [2, 1]
    last = documents[-1]
    assert last.invoice.renewals_count == 6 and last.invoice.gross.minor == 6 * 1000
    # SST 8 % included: RM 60.00 -> net 55.56, tax 4.44.
    assert (last.invoice.net.minor, last.invoice.tax.minor) == (5556, 444)
    assert last.pdf.startswith(b"%PDF")


async def test_a_worker_killed_mid_run_resumes_where_it_stopped(
    make_app: AppFactory, database_url: str, tmp_path: Path
) -> None:
    application = make_app(clock=CLOCK)
    services = application.services
    await load_demo(services)
    fleet = await make_fleet(services, cards=40)
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, lines_of(fleet.msisdns)
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    environment.update(
        TOPUP_DATABASE_URL=database_url,
        TOPUP_SECRET_KEY=conftest._valid_test_key(),
        TOPUP_GATEWAY_LATENCY_S="0.25",
        TOPUP_NETWORK_DELAY_S="0",
        TOPUP_NETWORK_LATENCY_S="0",
        TOPUP_BULK_BATCH_SIZE="10",
        TOPUP_BULK_CONCURRENCY="2",
        TOPUP_BULK_LINE_LEASE_S="2",
        # A line succeeds once its renewal is applied: the activation job the killed worker had
        # leased is taken again this soon (the network answers at once here).
        TOPUP_JOB_LEASE_S="3",
        TOPUP_SANDBOX_JOURNAL="",
        TOPUP_SANDBOX_SMS_OUTBOX="",
        TOPUP_MAIL_OUTBOX="",
    )

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [topup_executable(), "worker"],
            env=environment,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    worker = start_worker()
    try:
        deadline = time.monotonic() + 60
        while line_statuses(database_url, run.id).get("succeeded", 0) < 4:
            assert time.monotonic() < deadline, "the worker renewed nothing"
            await asyncio.sleep(0.1)
        os.killpg(worker.pid, signal.SIGKILL)  # mid-run, with a batch leased
        worker.wait(timeout=10)
        stopped = line_statuses(database_url, run.id)
        assert stopped.get("succeeded", 0) < 40, stopped
        worker = start_worker()
        while line_statuses(database_url, run.id) != {"succeeded": 40}:
            assert time.monotonic() < deadline + 60, line_statuses(database_url, run.id)
            await asyncio.sleep(0.2)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    per_card = renewals_per_card(database_url)
    async with services.unit_of_work() as uow:
        cards = await uow.cards.by_numbers(msisdns=fleet.msisdns, iccids=[])
    assert [per_card.get(card.id) for card in cards] == [1] * 40


async def test_policy_requests_run_one_at_a_time_and_two_workers_apply_one_once(
    make_app: AppFactory,
) -> None:
    """Two admins asking at once write one request (the database's unique key decides); two
    workers moving it on never apply one batch twice; the error params of a refusal and the
    counts come back as written."""
    small = LimitSettings(fleet_policy_batch_size=4)
    first, second = make_app(limits=small, clock=CLOCK), make_app(limits=small, clock=CLOCK)
    await load_demo(first.services)
    fleet = await make_fleet(first.services, cards=10)
    organisation = fleet.organisation_id
    choice = policy.PolicyChoice.one_plan("pack_5gb_7d")
    asked = await asyncio.gather(
        policy.request_fleet_policy(first.services, fleet.admin_id, organisation, choice),
        policy.request_fleet_policy(second.services, fleet.owner_id, organisation, choice),
        return_exceptions=True,
    )
    refused = [item for item in asked if isinstance(item, TopupError)]
    assert len(refused) == 1 and refused[0].code == "fleet_policy_running", asked
    moved = []
    for _ in range(10):
        steps = await asyncio.gather(
            policy.process_policy_requests(first.services),
            policy.process_policy_requests(second.services),
        )
        moved.append(sum(steps))
        if not sum(steps):
            break
    assert sum(moved) == 3  # 4, 8, then 10 cards: each batch moved by one worker, once
    found = await policy.latest_policy_request(first.services, fleet.viewer_id, organisation)
    assert found is not None and found.finished
    assert (found.reached, found.applied, found.already, found.refused) == (10, 10, 0, 0)
    # A refusal's code and params, stored and read back.
    CLOCK.advance(1)  # (a request comes after the one before it has finished)
    await policy.request_fleet_policy(
        first.services, fleet.admin_id, organisation, policy.PolicyChoice.one_plan("nope")
    )
    while await policy.process_policy_requests(first.services):
        pass
    wrong = await policy.latest_policy_request(first.services, fleet.viewer_id, organisation)
    assert wrong is not None and wrong.refused == 10 and len(wrong.refusals) == 10
    assert (wrong.refusals[0].code, dict(wrong.refusals[0].params)) == (
        "plan_unknown",
        {"plan": "nope"},
    )


def completed_renewals(database_url: str, card_id: str) -> list[str]:
    engine = _sync_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(t.renewals.c.id).where(
                    t.renewals.c.card_id == card_id, t.renewals.c.status == "completed"
                )
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


async def test_the_invoice_lists_auto_renewals_charged_to_the_organisation_only(
    make_app: AppFactory, database_url: str
) -> None:
    clock = FixedClock(conftest.START)
    application = make_app(clock=clock)
    services = application.services
    await load_demo(services)
    fleet = await make_fleet(services, cards=2)
    organisation = fleet.organisation_id
    async with services.unit_of_work() as uow:
        cards = await uow.cards.by_numbers(msisdns=fleet.msisdns, iccids=[])
        subscribers, policys = sorted(cards, key=lambda card: card.msisdn)
        await uow.accounts.link_card(fleet.outsider_id, subscribers.id, at=clock.now())
        await uow.commit()
    token = await services.gateway.tokenize(PaymentCardDetails("5555555555554444", 12, 2030, "123"))
    own = await saved_payment_cards.save_payment_token(services, fleet.outsider_id, token.token)
    await auto_renewal.set_auto_renewal(
        services,
        card_id=subscribers.id,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.saved_card(fleet.outsider_id, own.id),
        set_by=auto_renewal.SetBy(SetterKind.ACCOUNT, fleet.outsider_id),
    )

    async def charged(card_id: str) -> str:
        coming = await auto_renewal.upcoming_auto_renewals(
            services, due_before=clock.now() + dt.timedelta(days=60), limit=100
        )
        [charge_at] = [each.charge_at for each in coming if each.card_id == card_id]
        clock.set(charge_at)
        for _ in range(20):
            if not await work_once(services):
                break
        [renewal_id] = completed_renewals(database_url, card_id)
        return renewal_id

    paid_by_subscriber = await charged(subscribers.id)
    await policy.request_fleet_policy(
        services, fleet.admin_id, organisation, policy.PolicyChoice.one_plan(PLAN)
    )
    while await policy.process_policy_requests(services):
        pass
    paid_by_organisation = await charged(policys.id)
    month = f"{clock.now().astimezone(ZoneInfo(services.profile.time_zone)):%Y-%m}"

    document = await invoices.issue_invoice(services, fleet.viewer_id, organisation, month)

    listed = [renewal.renewal_id for renewal in document.renewals]
    assert listed == [paid_by_organisation] and paid_by_subscriber not in listed
    assert document.invoice.gross.minor == 1000


async def test_the_invoice_lists_an_auto_top_up_charged_to_the_organisation(
    make_app: AppFactory, database_url: str
) -> None:
    clock = FixedClock(conftest.START)
    application = make_app(clock=clock)
    services = application.services
    await load_demo(services)
    fleet = await make_fleet(services, cards=1)
    async with services.unit_of_work() as uow:
        [card] = await uow.cards.by_numbers(msisdns=fleet.msisdns, iccids=[])
        organisation = await uow.organisations.get(fleet.organisation_id)
    assert organisation is not None
    assert organisation.payment_card_account_id and organisation.payment_card_id
    await auto_renewal.set_auto_renewal(
        services,
        card_id=card.id,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.saved_card(
            organisation.payment_card_account_id, organisation.payment_card_id
        ),
        set_by=auto_renewal.SetBy(SetterKind.ORGANISATION, organisation.id),
        top_up=TopUpRule(PLAN, 500, month_count_max=2, month_amount_max=None),
    )
    engine = _sync_engine(database_url)
    try:
        with engine.begin() as connection:  # the card's data falls below the threshold
            connection.execute(
                t.cards.update().where(t.cards.c.id == card.id).values(data_quota_mb=100)
            )
    finally:
        engine.dispose()
    for _ in range(20):
        if not await work_once(services):
            break
    [renewal_id] = completed_renewals(database_url, card.id)
    month = f"{clock.now().astimezone(ZoneInfo(services.profile.time_zone)):%Y-%m}"

    document = await invoices.issue_invoice(services, fleet.viewer_id, organisation.id, month)

    assert [renewal.renewal_id for renewal in document.renewals] == [renewal_id]
    assert document.invoice.gross.minor == 1000
