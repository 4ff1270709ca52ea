"""Racing callers and racing workers, on SQLite and PostgreSQL: every renewal is charged once and
credited once, whoever gets there first."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import conftest
from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways.sandbox import CARD_TIMEOUT_CHARGE_TAKEN
from topup.bootstrap import Application, build
from topup.domain.cards import CardStatus
from topup.domain.errors import ConflictError
from topup.entrypoints.worker import work_once
from topup.ports import (
    ChargeResult,
    GatewayOutcome,
    NetworkProvisioner,
    PaymentCardDetails,
    ProvisionRequest,
    ProvisionResult,
)
from topup.services import queries
from topup.services.activation import run_due_jobs
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, record_charge_result, renew
from topup.services.views import CardView
from topup.settings import LimitSettings

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"  # prepaid, valid until START + 10 days, 5.00 credit, 2048 MB
GRACE_CARD = "+60123450001"  # prepaid, validity ended START - 3 days; grace ends START + 27 days
PACK_QUOTA_MB = 5 * 1024  # pack_5gb_7d
PLAN_VALIDITY_DAYS = 7  # pack_5gb_7d and reload_10
RELOAD_CREDIT_MINOR = 1000  # reload_10
WORK_ROUNDS_MAX = 20
# The PostgreSQL server is shared: each Application here keeps at most 5 + 20 (overflow)
# connections, so that even the tests with several Applications stay well inside its limit.
POOL_SIZE = 5
WORKER_CONCURRENCY = 8
REFUSED_AT_ONCE = 32


@pytest.fixture
def make_lean_app(make_app: AppFactory) -> AppFactory:
    """conftest's make_app with a small connection pool."""

    def factory(*, pool_size: int = POOL_SIZE, **options: Any) -> Application:
        return make_app(pool_size=pool_size, **options)

    return factory


@pytest.fixture
async def demo(make_lean_app: AppFactory) -> Application:
    application = make_lean_app()
    await load_demo(application.services)
    return application


def request(
    key: str, plan: str = "pack_5gb_7d", payment: PaymentCardDetails = GOOD_CARD
) -> RenewalRequest:
    return RenewalRequest(
        card_number=ACTIVE_CARD, plan_code=plan, payment=payment, idempotency_key=key
    )


async def count(services: Services, table: Any, *conditions: Any) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        query = select(func.count()).select_from(table).where(*conditions)
        return int((await connection.execute(query)).scalar_one())


async def count_entries(services: Services, kind: str) -> int:
    return await count(services, t.ledger_entries, t.ledger_entries.c.kind == kind)


async def drain(services: Services) -> None:
    """Run the worker until nothing is left to do."""
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(services) == 0:
            return
    pytest.fail(f"the worker still had work after {WORK_ROUNDS_MAX} rounds")


async def assert_all_completed(services: Services, renewal_ids: list[str]) -> None:
    statuses = [(await get_renewal(services, id_)).status for id_ in renewal_ids]
    assert set(statuses) == {"completed"}


async def assert_audit_clean(services: Services) -> None:
    report = await audit(services)
    assert report.clean, report.violations


def validity_end(balance: CardView) -> dt.datetime:
    if balance.validity_end is None:
        raise AssertionError("a prepaid card has a validity end")
    return balance.validity_end


def workers_limits() -> LimitSettings:
    return LimitSettings(worker_concurrency=WORKER_CONCURRENCY)


@pytest.mark.parametrize(
    ("plan", "quota_added_mb", "credit_added_minor"),
    [("pack_5gb_7d", PACK_QUOTA_MB, 0), ("reload_10", 0, RELOAD_CREDIT_MINOR)],
)
async def test_fifty_concurrent_renewals_of_one_card_each_add_exactly_one_plan(
    demo: Application, plan: str, quota_added_mb: int, credit_added_minor: int
) -> None:
    services = demo.services
    before = await queries.balance(services, ACTIVE_CARD)
    views = await asyncio.gather(
        *(renew(services, request(f"{plan}-{n}", plan=plan)) for n in range(50))
    )
    assert len({view.id for view in views}) == 50
    assert {view.status for view in views} == {"activating"}
    await drain(services)
    await assert_all_completed(services, [view.id for view in views])
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.data_quota_mb == before.data_quota_mb + 50 * quota_added_mb
    assert after.credit.minor == before.credit.minor + 50 * credit_added_minor
    assert validity_end(after) == validity_end(before) + dt.timedelta(days=50 * PLAN_VALIDITY_DAYS)
    assert await count_entries(services, "capture") == 50
    assert await count_entries(services, "activation") == 50
    await assert_audit_clean(services)


async def test_one_idempotency_key_from_twenty_threads_creates_and_charges_one_renewal(
    demo: Application, database_url: str
) -> None:
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    lock = threading.Lock()
    renewal_ids: list[str] = []
    retry_conflicts: list[ConflictError] = []
    unexpected: list[BaseException] = []

    async def attempt(application: Application) -> None:
        try:
            view = await renew(application.services, request("one-key-many-threads"))
            with lock:
                renewal_ids.append(view.id)
        except ConflictError as error:
            with lock:
                if error.code == "idempotency_key_in_use" and error.retryable:
                    retry_conflicts.append(error)
                else:
                    unexpected.append(error)
        finally:
            await application.close()

    def caller() -> None:
        try:
            application = build(conftest.test_settings(database_url), clock=FixedClock(START))
            barrier.wait(timeout=30)  # all callers start together
            asyncio.run(attempt(application))
        except BaseException as error:
            with lock:
                unexpected.append(error)

    threads = [threading.Thread(target=caller) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not unexpected, unexpected
    assert len(renewal_ids) + len(retry_conflicts) == threads_count
    assert renewal_ids, "at least one caller must get the renewal"
    assert len(set(renewal_ids)) == 1

    services = demo.services
    renewal_id = renewal_ids[0]
    assert await count(services, t.renewals) == 1
    assert await count(services, t.payments) == 1
    assert await count_entries(services, "capture") == 1
    assert await count(services, t.jobs, t.jobs.c.subject_id == renewal_id) == 1
    await drain(services)
    await assert_all_completed(services, [renewal_id])
    await assert_audit_clean(services)


async def test_one_idempotency_key_from_fifty_tasks_in_one_process_gives_one_renewal(
    demo: Application,
) -> None:
    """More replays at once than the pool has connections: none may wait on another."""
    services = demo.services
    views = await asyncio.wait_for(
        asyncio.gather(*(renew(services, request("double-click")) for _ in range(50))),
        timeout=20,
    )
    assert len({view.id for view in views}) == 1
    assert sum(not view.replayed for view in views) == 1
    assert await count(services, t.renewals) == 1
    assert await count_entries(services, "capture") == 1


async def _forty_activating_renewals(application: Application) -> list[str]:
    services = application.services
    views = await asyncio.gather(*(renew(services, request(f"batch-{n}")) for n in range(40)))
    assert {view.status for view in views} == {"activating"}
    await application.engine.dispose()  # hand its idle connections back to the server
    return [view.id for view in views]


async def _assert_forty_packs_credited_once(services: Services, before: CardView) -> None:
    assert await count_entries(services, "activation") == 40
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.data_quota_mb == before.data_quota_mb + 40 * PACK_QUOTA_MB
    assert validity_end(after) == validity_end(before) + dt.timedelta(days=40 * PLAN_VALIDITY_DAYS)
    await assert_audit_clean(services)


async def test_two_workers_running_due_jobs_concurrently_credit_each_renewal_once(
    demo: Application, make_lean_app: AppFactory
) -> None:
    services = demo.services
    before = await queries.balance(services, ACTIVE_CARD)
    renewal_ids = await _forty_activating_renewals(demo)
    first = make_lean_app(seed=2, limits=workers_limits()).services
    second = make_lean_app(seed=3, limits=workers_limits()).services
    ran = 0
    for _ in range(WORK_ROUNDS_MAX):
        counts = await asyncio.gather(run_due_jobs(first), run_due_jobs(second))
        if sum(counts) == 0:
            break
        ran += sum(counts)
    assert ran == 40
    await assert_all_completed(services, renewal_ids)
    # With leases that never ran out, no job was ever taken by both workers.
    assert await count(services, t.jobs, t.jobs.c.claims != 1) == 0
    await _assert_forty_packs_credited_once(services, before)


class HeldNetwork:
    """Wraps a network; every call waits until the test lets it go, so a worker stays mid-call."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network
        self.released = asyncio.Event()
        self.calls_in_flight = 0

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        self.calls_in_flight += 1
        await self.released.wait()
        return await self._network.apply(request)


async def test_a_worker_finishing_after_its_lease_ran_out_changes_nothing(
    demo: Application, make_lean_app: AppFactory
) -> None:
    services = demo.services
    before = await queries.balance(services, ACTIVE_CARD)
    renewal_ids = await _forty_activating_renewals(demo)
    limits = LimitSettings(worker_batch_size=32, worker_concurrency=WORKER_CONCURRENCY)
    batch = limits.worker_batch_size
    slow = make_lean_app(seed=2, limits=limits).services
    held = HeldNetwork(slow.network)
    slow.network = held
    late_clock = FixedClock(START + dt.timedelta(seconds=limits.job_lease_s + 1))
    fast = make_lean_app(seed=3, clock=late_clock, limits=limits).services
    slow_run = asyncio.create_task(run_due_jobs(slow))
    in_flight = min(batch, slow.limits.worker.worker_concurrency)
    for _ in range(1000):  # the slow worker claims its batch, then waits on the network
        if held.calls_in_flight == in_flight:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"the slow worker has {held.calls_in_flight} network calls in flight")
    # Its leases have run out for the fast worker, which takes every job, those included.
    assert await run_due_jobs(fast) == batch
    assert await run_due_jobs(fast) == 40 - batch
    assert await run_due_jobs(fast) == 0
    await assert_all_completed(services, renewal_ids)
    held.released.set()
    assert await slow_run == batch  # and it finds every renewal settled
    assert await count(services, t.jobs, t.jobs.c.claims == 2) == batch
    await assert_all_completed(services, renewal_ids)
    await _assert_forty_packs_credited_once(services, before)


async def test_many_activations_refused_at_once_are_refunded_without_starving_the_pool(
    demo: Application, make_lean_app: AppFactory
) -> None:
    """A card in grace is paid for 32 times, then customer service terminates the line before a
    worker with fewer connections than jobs in flight applies any of it."""
    payer_application = make_lean_app(seed=2, clock=FixedClock(START + dt.timedelta(days=26)))
    payer = payer_application.services
    views = await asyncio.gather(
        *(
            renew(payer, replace(request(f"late-{n}"), card_number=GRACE_CARD))
            for n in range(REFUSED_AT_ONCE)
        )
    )
    assert {view.status for view in views} == {"activating"}
    async with payer.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=GRACE_CARD)
        await uow.cards.save(
            replace(card, status=CardStatus.EXPIRED, version=card.version + 1),
            expected_version=card.version,
            at=START + dt.timedelta(days=26),
        )
        await uow.commit()
    await payer_application.engine.dispose()
    worker = make_lean_app(
        seed=3,
        clock=FixedClock(START + dt.timedelta(days=27, hours=12)),
        pool_size=2,  # PostgreSQL: 2 + 20 overflow connections for 32 jobs; SQLite: 15
        limits=LimitSettings(worker_batch_size=REFUSED_AT_ONCE, worker_concurrency=REFUSED_AT_ONCE),
    ).services
    await asyncio.wait_for(drain(worker), timeout=20)
    for view in views:
        assert (await get_renewal(worker, view.id)).status == "refunded"
    assert (await queries.balance(worker, GRACE_CARD)).status == "expired"
    assert await count_entries(worker, "refund") == len(views)
    await assert_audit_clean(worker)


async def test_racing_success_reports_for_one_renewal_capture_once_and_queue_one_activation(
    demo: Application, make_lean_app: AppFactory
) -> None:
    """The caller that timed out and the reconciler both learn that the charge went through."""
    services = demo.services
    timeout_taken = PaymentCardDetails(
        number=CARD_TIMEOUT_CHARGE_TAKEN, expiry_month=12, expiry_year=2030, cvc="123"
    )
    view = await renew(services, request("timed-out", payment=timeout_taken))
    assert view.status == "payment_pending"
    reconciler = make_lean_app(seed=2).services
    succeeded = ChargeResult(GatewayOutcome.SUCCEEDED, gateway_reference="ch_sbx_race")
    results = await asyncio.gather(
        *(
            record_charge_result(caller, view.id, succeeded)
            for caller in [services, reconciler] * 10
        )
    )
    assert {result.status for result in results} == {"activating"}
    assert await count_entries(services, "capture") == 1
    assert await count(services, t.jobs, t.jobs.c.subject_id == view.id) == 1
    paid = await get_renewal(services, view.id)
    assert paid.payment is not None and paid.payment.status == "succeeded"
    assert [step.to_status.value for step in paid.timeline].count("activating") == 1
    await drain(services)
    await assert_all_completed(services, [view.id])
    await assert_audit_clean(services)
