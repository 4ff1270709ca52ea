"""The in-memory repositories answer as the SQL ones do: the same scenarios run on the fakes
(``adapters.memory``), on SQLite and on PostgreSQL. A unique key broken is an integrity error
in the database and an InvariantError in memory; every other answer is the same."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from tests.conftest import START
from tests.conftest import _truncate_postgres as truncate_postgres
from tests.conftest import test_settings as database_settings
from tests.unit.fakes import settings as fake_settings
from topup.adapters.clock import FixedClock
from topup.bootstrap import build, build_in_memory
from topup.domain import ledger
from topup.domain.cards import Card
from topup.domain.errors import InvariantError
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.records import (
    CardLedgerBalances,
    IdempotencyFinish,
    IdempotencyRecord,
    IdempotencyState,
    JobKind,
    JobOutcome,
    JobStatus,
    JobSubject,
    PaymentRecord,
    PaymentStatus,
    RenewalEntryCounts,
    RenewalRecord,
    StalledRenewal,
)
from topup.domain.renewal import RenewalStatus
from topup.ports import UnitOfWork
from topup.services.demo import load_demo

UNIQUE_VIOLATION = (IntegrityError, InvariantError)
ACTIVE_CARD = "+60123456789"
LEASE_S = 60


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``memory``, or the URL of a freshly migrated, empty database."""
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        path = tmp_path / "topup.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    truncate_postgres(url)
    return url


@pytest.fixture
async def unit_of_work(where: str) -> AsyncIterator[Callable[[], UnitOfWork]]:
    clock = FixedClock(START)
    application = None
    if where == "memory":
        services, _ = build_in_memory(fake_settings(), clock=clock, seed=1)
    else:
        application = build(database_settings(where), clock=clock, seed=1)
        services = application.services
    await load_demo(services)
    yield services.unit_of_work
    if application is not None:
        await application.close()


async def a_card(uow: UnitOfWork) -> Card:
    card = await uow.cards.by_number(msisdn=ACTIVE_CARD)
    assert card is not None
    return card


def renewal(card: Card, renewal_id: str, key: str) -> RenewalRecord:
    return RenewalRecord(
        id=renewal_id,
        card_id=card.id,
        plan_code="pack_5gb_7d",
        kind=PlanKind.PREPAID_PACK,
        channel="web",
        amount=Money(1000, "MYR"),
        data_quota_mb=5120,
        validity_days=7,
        status=RenewalStatus.PENDING_PAYMENT,
        idempotency_key=key,
        request_fingerprint="f",
        decline_code=None,
        created_at=START,
        updated_at=START,
        paid_at=None,
        completed_at=None,
        expected_by=None,
        contact_after=None,
        receipt_number=f"R-{renewal_id}",
    )


def payment(renewal_id: str, payment_id: str) -> PaymentRecord:
    return PaymentRecord(
        id=payment_id,
        renewal_id=renewal_id,
        gateway="sandbox",
        method="credit_card",
        status=PaymentStatus.NOT_SENT,
        amount=Money(1000, "MYR"),
        token_encrypted="sealed",
        brand="visa",
        funding="credit",
        last4="4242",
        expiry_month=12,
        expiry_year=2030,
        issuer_country="MY",
        gateway_reference=None,
        decline_code=None,
        requested_at=START,
        check_attempts=0,
        next_check_at=START,
        flagged_for_staff=False,
        refund_reference=None,
    )


async def test_work_not_committed_is_rolled_back(unit_of_work: Callable[[], UnitOfWork]) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
    async with unit_of_work() as uow:
        assert await uow.renewals.get("r-1") is None


async def test_a_renewal_whose_key_or_id_is_taken_is_left_out(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        assert await uow.renewals.add_many([renewal(card, "r-1", "k-1")]) == {"r-1"}
        await uow.commit()
    async with unit_of_work() as uow:
        taken_key = renewal(card, "r-2", "k-1")
        taken_id = replace(renewal(card, "r-1", "k-3"), receipt_number="R-other")
        fresh = renewal(card, "r-4", "k-4")
        assert await uow.renewals.add_many([taken_key, taken_id, fresh]) == {"r-4"}
        found = await uow.renewals.by_idempotency_keys(["k-1", "k-4", "k-none"])
        assert {key: record.id for key, record in found.items()} == {"k-1": "r-1", "k-4": "r-4"}


async def test_a_card_saved_with_a_stale_version_is_refused(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        changed = replace(card, data_quota_mb=card.data_quota_mb + 1, version=card.version + 1)
        await uow.cards.save(changed, expected_version=card.version, at=START)
        with pytest.raises(InvariantError):
            await uow.cards.save(changed, expected_version=card.version, at=START)


async def test_a_renewal_moved_from_a_status_it_left_is_refused(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
        record = await uow.renewals.get("r-1")
        assert record is not None
        await uow.renewals.move(record, RenewalStatus.DECLINED, at=START, reason="declined")
        with pytest.raises(InvariantError):
            await uow.renewals.move(record, RenewalStatus.CANCELLED, at=START, reason="again")
        moved = await uow.renewals.get("r-1")
        assert moved is not None and moved.status is RenewalStatus.DECLINED
        timeline = (await uow.renewals.timelines(["r-1"]))["r-1"]
        assert [step.to_status for step in timeline] == [RenewalStatus.DECLINED]


async def test_a_second_payment_of_one_renewal_is_refused(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
        await uow.payments.add_many([payment("r-1", "p-1")], at=START)
        with pytest.raises(UNIQUE_VIOLATION):
            await uow.payments.add_many([payment("r-1", "p-2")], at=START)


async def test_payment_checks_due_are_leased_and_counted(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
        await uow.payments.add_many([payment("r-1", "p-1")], at=START)
        lease_until = START + dt.timedelta(seconds=LEASE_S)
        leased = await uow.payments.claim_due_checks(
            statuses=[PaymentStatus.NOT_SENT], now=START, lease_until=lease_until, limit=10
        )
        assert [(p.id, p.check_attempts, p.next_check_at) for p in leased] == [
            ("p-1", 1, lease_until)
        ]
        again = await uow.payments.claim_due_checks(
            statuses=[PaymentStatus.NOT_SENT], now=START, lease_until=lease_until, limit=10
        )
        assert again == []
        await uow.payments.update("p-1", status=PaymentStatus.SUCCEEDED, updated_at=START)
        found = await uow.payments.for_renewal("r-1")
        assert found is not None and found.status is PaymentStatus.SUCCEEDED


async def test_a_job_is_queued_once_claimed_under_a_lease_and_finished_once(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
        subject = JobSubject.renewal("r-1")
        await uow.jobs.enqueue(kind=JobKind.ACTIVATE, subject=subject, at=START)
        await uow.jobs.enqueue(kind=JobKind.REFUND, subject=subject, at=START, reason="why")
        refund = [job for job in await uow.jobs.for_subject(subject) if job.kind is JobKind.REFUND]
        assert [job.reason for job in refund] == ["why"]
        assert await uow.jobs.withdraw_unclaimed(refund[0].id, at=START, error="withdrawn")
        lease_until = START + dt.timedelta(seconds=LEASE_S)
        claimed = await uow.jobs.claim(now=START, lease_until=lease_until, limit=10)
        assert [(job.renewal_id, job.claims, job.status) for job in claimed] == [
            ("r-1", 1, JobStatus.QUEUED)
        ]
        assert await uow.jobs.claim(now=START, lease_until=lease_until, limit=10) == []
        assert not await uow.jobs.withdraw_unclaimed(claimed[0].id, at=START, error="too late")
        assert await uow.jobs.finish(claimed[0], status=JobStatus.DONE, at=START)
        assert not await uow.jobs.finish(claimed[0], status=JobStatus.FAILED, at=START)
        assert [job.status for job in await uow.jobs.for_subject(subject)] == [
            JobStatus.DONE,
            JobStatus.FAILED,
        ]
        with pytest.raises(UNIQUE_VIOLATION):
            await uow.jobs.enqueue(kind=JobKind.ACTIVATE, subject=subject, at=START)


async def test_a_renewal_has_one_ledger_entry_of_each_kind(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
        entry = ledger.capture(
            renewal_id="r-1", card_id=card.id, gateway="sandbox", amount=Money(1000, "MYR")
        )
        await uow.ledger.record(entry, at=START)
        with pytest.raises(UNIQUE_VIOLATION):
            await uow.ledger.record(entry, at=START)


async def test_a_webhook_event_is_new_only_the_first_time(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        events = [("sandbox_wallet", "e-1", "p-1")]
        assert await uow.webhooks.first_times(events, at=START) == {("sandbox_wallet", "e-1")}
        assert await uow.webhooks.first_times(events, at=START) == set()


async def test_wrong_payment_passwords_are_counted_in_a_window_and_lock(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    later = START + dt.timedelta(hours=1)
    async with unit_of_work() as uow:
        locks = uow.payment_card_locks
        assert await locks.count_wrong_answer("f", now=START, window_start=START) == 1
        assert await locks.count_wrong_answer("f", now=START, window_start=START) == 2
        await locks.lock("f", until=later, now=START)
        assert await locks.locked(["f", "g"], now=START) == {"f": later}
        assert await locks.locked(["f"], now=later) == {}
        assert await locks.count_wrong_answer("f", now=later, window_start=later) == 1
        await locks.forget("f")
        assert await locks.locked(["f"], now=START) == {}


async def test_a_clean_database_has_nothing_for_the_audit_to_report(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        audit = uow.audit
        assert await audit.unbalanced_entries() == []
        assert await audit.entries_with_too_few_postings() == []
        assert await audit.balance_mismatches() == []
        assert await audit.stalled_renewals() == []
        assert await audit.refunded_although_applied() == []
        assert await audit.jobs_about_missing_renewals() == []
        card = await a_card(uow)
        balances = {row.card_id: row for row in await audit.card_balances()}
        assert balances[card.id] == CardLedgerBalances(
            card_id=card.id,
            kind=card.kind.value,
            currency=card.currency,
            credit_minor=card.credit.minor,
            bill_due_minor=card.bill_due.minor,
            credit_account_minor=-card.credit.minor,
            receivable_account_minor=card.bill_due.minor,
        )


async def test_the_audit_queries_find_what_was_planted(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    opening = Money(300, "MYR")
    async with unit_of_work() as uow:
        card = await a_card(uow)
        statuses = {
            "r-completed": RenewalStatus.COMPLETED,  # no capture, no activation
            "r-waiting": RenewalStatus.PENDING_PAYMENT,  # no payment, no job
            "r-unchecked": RenewalStatus.PENDING_PAYMENT,  # a payment never checked again
            "r-checked": RenewalStatus.PENDING_PAYMENT,  # a payment checked later: not stalled
            "r-refunded": RenewalStatus.REFUNDED,  # and applied by the network
        }
        await uow.renewals.add_many(
            [
                replace(renewal(card, renewal_id, f"k-{renewal_id}"), status=status)
                for renewal_id, status in statuses.items()
            ]
        )
        unchecked = replace(payment("r-unchecked", "p-unchecked"), next_check_at=None)
        await uow.payments.add_many([unchecked, payment("r-checked", "p-checked")], at=START)
        refunded = JobSubject.renewal("r-refunded")
        await uow.jobs.enqueue(kind=JobKind.ACTIVATE, subject=refunded, at=START)
        [activation] = await uow.jobs.for_subject(refunded)
        await uow.jobs.finish(
            activation, status=JobStatus.DONE, at=START, outcome=JobOutcome.APPLIED
        )
        missing = JobSubject.renewal("r-missing")
        await uow.jobs.enqueue(kind=JobKind.ACTIVATE, subject=missing, at=START)
        [orphan] = await uow.jobs.for_subject(missing)
        await uow.ledger.record(ledger.opening_credit(card_id=card.id, amount=opening), at=START)
        await uow.commit()
    async with unit_of_work() as uow:
        audit = uow.audit
        counts = {row.renewal_id: row for row in await audit.renewal_entry_counts()}
        assert {counts[renewal_id] for renewal_id in statuses} == {
            RenewalEntryCounts(renewal_id, status.value, 0, 0, 0)
            for renewal_id, status in statuses.items()
        }
        assert sorted(await audit.stalled_renewals(), key=lambda row: row.renewal_id) == [
            StalledRenewal("r-unchecked", "pending_payment", "not_sent"),
            StalledRenewal("r-waiting", "pending_payment", None),
        ]
        assert [
            (row.renewal_id, row.job_id) for row in await audit.refunded_although_applied()
        ] == [("r-refunded", activation.id)]
        assert [
            (row.job_id, row.renewal_id) for row in await audit.jobs_about_missing_renewals()
        ] == [(orphan.id, "r-missing")]
        balances = {row.card_id: row for row in await audit.card_balances()}
        assert balances[card.id].credit_minor == card.credit.minor
        assert balances[card.id].credit_account_minor == -card.credit.minor - opening.minor
        assert await audit.unbalanced_entries() == []
        assert await audit.balance_mismatches() == []


async def test_payments_for_settlement_are_found_by_id_reference_and_entry_time(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        await uow.renewals.add_many([renewal(card, "r-1", "k-1")])
        await uow.payments.add_many(
            [replace(payment("r-1", "p-1"), gateway_reference="ch-1")], at=START
        )
        await uow.ledger.record(
            ledger.capture(
                renewal_id="r-1", card_id=card.id, gateway="sandbox", amount=Money(1000, "MYR")
            ),
            at=START,
        )
        await uow.commit()
    hour = dt.timedelta(hours=1)
    async with unit_of_work() as uow:
        audit = uow.audit
        [by_id] = await audit.settlement_payments(payment_ids=["p-1", "p-none"])
        assert await audit.settlement_payments(charge_references=["ch-1"]) == [by_id]
        assert await audit.settlement_payments(refund_references=["rf-1"]) == []
        assert await audit.settlement_payments() == []
        assert (by_id.id, by_id.renewal_id, by_id.status, by_id.amount_minor) == (
            "p-1",
            "r-1",
            "not_sent",
            1000,
        )
        assert (by_id.renewal_status, by_id.captured_at, by_id.refunded_at) == (
            "pending_payment",
            START,
            None,
        )
        captured = await audit.payments_captured_between(START, START + hour, gateway="sandbox")
        assert captured == [by_id]
        assert (
            await audit.payments_captured_between(START + hour, START + 2 * hour, gateway="sandbox")
            == []
        )
        assert await audit.payments_captured_between(START, START + hour, gateway="other") == []
        assert await audit.payments_refunded_between(START, START + hour, gateway="sandbox") == []


def request_record(request_id: str, key: str, *, at: dt.datetime = START) -> IdempotencyRecord:
    return IdempotencyRecord(
        id=request_id,
        scope="caller",
        key=key,
        fingerprint="f-1",
        state=IdempotencyState.RUNNING,
        created_at=at,
        started_at=at,
    )


async def test_an_idempotency_key_is_recorded_once_finished_restarted_and_pruned(
    unit_of_work: Callable[[], UnitOfWork],
) -> None:
    later = START + dt.timedelta(hours=1)
    async with unit_of_work() as uow:
        store = uow.idempotency
        assert await store.add_many([request_record("q-1", "k-1")]) == {"q-1"}
        taken = [request_record("q-2", "k-1"), request_record("q-3", "k-3")]
        assert await store.add_many(taken) == {"q-3"}
        assert await store.by_keys([("caller", "k-1"), ("caller", "k-none")]) == {
            ("caller", "k-1"): request_record("q-1", "k-1")
        }
        done = IdempotencyFinish(
            "q-1", IdempotencyState.DONE, status_code=201, content_type="j", body=b"sealed"
        )
        await store.finish_many([done, IdempotencyFinish("q-3", IdempotencyState.OPEN)])
        found = await store.by_keys([("caller", "k-1"), ("caller", "k-3")], for_update=True)
        assert found[("caller", "k-1")] == replace(
            request_record("q-1", "k-1"),
            state=IdempotencyState.DONE,
            status_code=201,
            content_type="j",
            body=b"sealed",
        )
        assert found[("caller", "k-3")].state is IdempotencyState.OPEN
        await store.restart(
            "q-1", replace(request_record("q-4", "k-1", at=later), fingerprint="f-2")
        )
        [restarted] = (await store.by_keys([("caller", "k-1")])).values()
        assert (restarted.id, restarted.fingerprint, restarted.state, restarted.created_at) == (
            "q-4",
            "f-2",
            IdempotencyState.RUNNING,
            later,
        )
        assert restarted.body == b"sealed"  # the response is kept until it is replaced
        assert await store.prune(created_before=later, limit=10) == 1  # q-3
        assert set(await store.by_keys([("caller", "k-1"), ("caller", "k-3")])) == {
            ("caller", "k-1")
        }
        await uow.commit()
    async with unit_of_work() as uow:
        [kept] = (await uow.idempotency.by_keys([("caller", "k-1")])).values()
        assert kept == restarted
