"""Staff refunds racing running workers, on SQLite and PostgreSQL: a worker's claim of an
activation and a staff refund exclude each other, so no renewal is both applied by the network
and refunded, whatever the moment the refund comes. (Before claims and refunds were decided in
the job's row, this failed on PostgreSQL in most runs; the reliable regression test of that
moment is in test_staff_refund.py.)"""

from __future__ import annotations

import asyncio
import random

from tests.conftest import AppFactory
from topup.domain.errors import ConflictError
from topup.entrypoints.worker import work_once
from topup.ports import NetworkProvisioner, PaymentCardDetails, ProvisionRequest, ProvisionResult
from topup.ports import ProvisionStatus as Provision
from topup.services.activation import request_refund
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, renew
from topup.settings import LimitSettings

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"
RACE_RENEWALS = 80
RACE_SEED = 9
REFUND_WINDOW_S = 0.6  # refunds are fired at random moments within this window
NETWORK_LATENCY_S = 0.03  # each call to the network takes this long: the claim-to-report window
RACE_DEADLINE_S = 8.0  # the worker has this long to settle every renewal
WORKER_IDLE_S = 0.005
POOL_SIZE = 5
RACE_WORKERS = 4  # worker loops claiming side by side, as several worker processes would


class RecordingNetwork:
    """The sandbox network, remembering which activations it answered ``applied`` to."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network
        self.applied: set[str] = set()

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        result = await self._network.apply(request)
        if result.status is Provision.APPLIED:
            self.applied.add(request.activation_id)
        return result


async def paid_renewals(services: Services, count: int) -> list[str]:
    ids = []
    for number in range(count):
        view = await renew(
            services,
            RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD, idempotency_key=f"race-{number}"),
        )
        assert view.status == "activating"
        ids.append(view.id)
    return ids


async def run_worker(services: Services, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if await work_once(services) == 0:
            await asyncio.sleep(WORKER_IDLE_S)


async def refund_at_random(services: Services, renewal_id: str, delay_s: float) -> str:
    await asyncio.sleep(delay_s)
    try:
        return await request_refund(services, renewal_id, reason="customer changed their mind")
    except ConflictError as refused:
        return refused.code


async def settle(services: Services, renewal_ids: list[str]) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RACE_DEADLINE_S
    while True:
        statuses = {id_: (await get_renewal(services, id_)).status for id_ in renewal_ids}
        if "activating" not in statuses.values() or loop.time() > deadline:
            return statuses
        await asyncio.sleep(0.05)


async def test_refunds_fired_while_the_worker_runs_never_leave_a_renewal_applied_and_refunded(
    make_app: AppFactory,
) -> None:
    application = make_app(
        network_latency_s=NETWORK_LATENCY_S,
        pool_size=POOL_SIZE,
        limits=LimitSettings(worker_batch_size=2, worker_concurrency=2),
    )
    services = application.services
    await load_demo(services)
    network = RecordingNetwork(services.network)
    services.network = network
    renewal_ids = await paid_renewals(services, RACE_RENEWALS)
    draw = random.Random(RACE_SEED)
    stop = asyncio.Event()
    workers = [asyncio.create_task(run_worker(services, stop)) for _ in range(RACE_WORKERS)]
    try:
        answers = await asyncio.gather(
            *(
                refund_at_random(services, id_, draw.uniform(0, REFUND_WINDOW_S))
                for id_ in renewal_ids
            )
        )
        statuses = await settle(services, renewal_ids)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert set(answers) <= {"queued", "activation_already_sent", "renewal_not_refundable"}
    assert "activating" not in statuses.values(), statuses
    refunded = {id_ for id_, status in statuses.items() if status == "refunded"}
    both = refunded & network.applied
    assert not both, f"{len(both)} renewals applied by the network and refunded"
    assert refunded == {
        id_ for id_, answer in zip(renewal_ids, answers, strict=True) if answer == "queued"
    }
    report = await audit(services)
    assert report.clean, report.violations
