"""Staff refunds of paid renewals not yet applied, on SQLite and PostgreSQL: concurrent requests
give one refund, the card is not credited afterwards, an applied renewal is not refunded, a
renewal a worker has claimed is not refunded, and the timeline says who refunded it and why."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from tests.conftest import AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.db.jobs import JobRepository
from topup.bootstrap import Application
from topup.domain.errors import TopupError
from topup.domain.records import JobSubject
from topup.domain.renewal import RefundCause, RenewalStatus, refund_reason
from topup.entrypoints.worker import work_once
from topup.ports import NetworkProvisioner, PaymentCardDetails, ProvisionRequest, ProvisionResult
from topup.services import queries
from topup.services.activation import request_refund
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, renew

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"
REFUSING_CARD = "+60123400000"  # the sandbox network refuses it for good
CONCURRENT_REQUESTS = 10
WORK_ROUNDS_MAX = 20
NETWORK_WAIT_S = 5
STAFF_REASON = "network outage in the region"


async def paid_renewal(services: Services, key: str) -> str:
    view = await renew(
        services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD, idempotency_key=key)
    )
    assert view.status == "activating"
    return view.id


async def drain(services: Services) -> None:
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(services) == 0:
            return
    raise AssertionError("the worker still had work")


async def refunds(services: Services) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        query = (
            select(func.count())
            .select_from(t.ledger_entries)
            .where(t.ledger_entries.c.kind == "refund")
        )
        return int((await connection.execute(query)).scalar_one())


async def test_concurrent_staff_refunds_of_one_renewal_give_one_refund_and_no_credit(
    demo_app: Application,
) -> None:
    services = demo_app.services
    before = await queries.balance(services, ACTIVE_CARD)
    renewal_id = await paid_renewal(services, "refund-me")
    answers = await asyncio.gather(
        *(
            request_refund(services, renewal_id, reason="network outage in the region")
            for _ in range(CONCURRENT_REQUESTS)
        )
    )
    assert sorted(answers) == ["already_queued"] * (CONCURRENT_REQUESTS - 1) + ["queued"]
    await drain(services)
    assert (await get_renewal(services, renewal_id)).status == "refunded"
    assert await refunds(services) == 1
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.credit.minor == before.credit.minor  # never credited
    assert (await audit(services)).clean
    assert await request_refund(services, renewal_id, reason="again") == "already_queued"


async def test_an_applied_renewal_is_not_refunded_by_staff(demo_app: Application) -> None:
    services = demo_app.services
    renewal_id = await paid_renewal(services, "applied")
    await drain(services)
    with pytest.raises(TopupError) as caught:
        await request_refund(services, renewal_id, reason="changed my mind")
    assert caught.value.code == "renewal_not_refundable"
    assert await refunds(services) == 0


async def test_a_refund_needs_a_reason(demo_app: Application) -> None:
    renewal_id = await paid_renewal(demo_app.services, "no-reason")
    with pytest.raises(TopupError) as caught:
        await request_refund(demo_app.services, renewal_id, reason="  ")
    assert caught.value.code == "refund_reason_invalid"


async def test_a_renewal_already_sent_to_the_network_is_not_refunded_by_staff(
    make_app: AppFactory,
) -> None:
    application = make_app(network_delay_s=3600)  # the network takes an hour to apply it
    await load_demo(application.services)
    services = application.services
    renewal_id = await paid_renewal(services, "sent")
    await work_once(services)  # the worker sends it; the network is still working on it
    with pytest.raises(TopupError) as caught:
        await request_refund(services, renewal_id, reason="customer asked")
    assert caught.value.code == "activation_already_sent"


class HeldNetwork:
    """The sandbox network, holding every activation until released: a worker that claimed a
    job waits here, before it reports back."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        self.reached.set()
        await self.release.wait()
        return await self._network.apply(request)


async def test_a_refund_while_the_worker_waits_for_the_network_is_refused_and_the_renewal_completes(
    demo_app: Application,
) -> None:
    services = demo_app.services
    network = HeldNetwork(services.network)
    services.network = network
    renewal_id = await paid_renewal(services, "claimed")
    worker = asyncio.create_task(work_once(services))
    await asyncio.wait_for(network.reached.wait(), NETWORK_WAIT_S)  # claimed, not reported back
    with pytest.raises(TopupError) as caught:
        await request_refund(services, renewal_id, reason="customer asked")
    assert caught.value.code == "activation_already_sent"
    network.release.set()
    await worker
    assert (await get_renewal(services, renewal_id)).status == "completed"
    assert await refunds(services) == 0
    assert (await audit(services)).clean


async def test_a_refund_loses_to_a_claim_made_after_it_read_the_jobs(
    demo_app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moment the race used: the refund has read the renewal's jobs (none claimed yet) and
    a worker's claim lands before the refund writes. On PostgreSQL the claim commits from its
    own connection, as a worker's does; SQLite has one writer at a time, so there the claim is
    made inside the refund's transaction, where the refund's write sees it the same way."""
    services = demo_app.services
    clock = services.clock
    assert isinstance(clock, FixedClock)
    renewal_id = await paid_renewal(services, "claimed-meanwhile")
    read_jobs = JobRepository.for_subject
    lease_until = clock.now() + dt.timedelta(seconds=services.limits.worker.job_lease_s)

    async def read_then_claim(self: JobRepository, subject: JobSubject) -> list[object]:
        jobs = await read_jobs(self, subject)
        if demo_app.engine.dialect.name == "sqlite":
            await self.claim(now=clock.now(), lease_until=lease_until, limit=1)
        else:
            async with services.unit_of_work() as worker:
                await worker.jobs.claim(now=clock.now(), lease_until=lease_until, limit=1)
                await worker.commit()
        return list(jobs)

    monkeypatch.setattr(JobRepository, "for_subject", read_then_claim)
    with pytest.raises(TopupError) as caught:
        await request_refund(services, renewal_id, reason="customer asked")
    assert caught.value.code == "activation_already_sent"
    monkeypatch.undo()
    clock.advance(
        services.limits.worker.job_lease_s + 1
    )  # the claiming worker died; its lease ends
    await drain(services)
    assert (await get_renewal(services, renewal_id)).status == "completed"
    assert await refunds(services) == 0
    assert (await audit(services)).clean


async def test_the_timeline_of_a_staff_refund_says_staff_refunded_it_and_why(
    demo_app: Application,
) -> None:
    services = demo_app.services
    renewal_id = await paid_renewal(services, "staff")
    assert await request_refund(services, renewal_id, reason=f"  {STAFF_REASON} ") == "queued"
    await drain(services)
    step = (await get_renewal(services, renewal_id)).timeline[-1]
    assert (step.from_status, step.to_status) == (RenewalStatus.ACTIVATING, RenewalStatus.REFUNDED)
    assert step.reason == refund_reason(RefundCause.STAFF_REQUEST, STAFF_REASON)
    assert step.reason == f"refunded at staff request before activation: {STAFF_REASON}"
    history = await queries.history(services, ACTIVE_CARD, limit=10)
    memos = [line.memo for line in history.ledger_entries if line.kind == "refund"]
    assert memos == [f"payment refunded for renewal {renewal_id}: {step.reason}"]


async def test_the_timeline_of_an_automatic_refund_says_the_activation_failed_and_why(
    demo_app: Application,
) -> None:
    services = demo_app.services
    view = await renew(
        services, RenewalRequest(REFUSING_CARD, "reload_10", GOOD_CARD, idempotency_key="refused")
    )
    await drain(services)
    step = (await get_renewal(services, view.id)).timeline[-1]
    assert step.to_status is RenewalStatus.REFUNDED
    assert step.reason.startswith("activation failed permanently (The sandbox network refuses")
    assert "staff" not in step.reason
