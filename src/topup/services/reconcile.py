"""Resolve payments whose outcome we do not know by asking the gateway. Never charges again,
except re-sending a charge the gateway provably never received (same id = its idempotency key)."""

from __future__ import annotations

import asyncio
import datetime as dt

from topup.domain.errors import TopupError
from topup.domain.records import PaymentRecord, PaymentStatus
from topup.limits import Limits
from topup.ports import ChargeRequest, ChargeResult, GatewayOutcome, PaymentGateway
from topup.services.context import Services
from topup.services.renewals import charge_of, record_charge_result, send_charge

CHECKED_STATUSES = (
    PaymentStatus.NOT_SENT,
    PaymentStatus.PENDING,
    PaymentStatus.UNKNOWN,
    PaymentStatus.REQUIRES_ACTION,
)
UNRESOLVED = (GatewayOutcome.PENDING, GatewayOutcome.UNKNOWN)


async def reconcile_payments(services: Services) -> int:
    """Ask the gateway about a batch of due payments. Returns how many were checked."""
    now = services.clock.now()
    limits = services.limits
    async with services.unit_of_work() as uow:
        due: list[PaymentRecord] = await uow.payments.claim_due_checks(
            statuses=CHECKED_STATUSES,
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.worker.job_lease_s),
            limit=limits.worker.worker_batch_size,
        )
        await uow.commit()
    gate = asyncio.Semaphore(limits.worker.worker_concurrency)

    async def check(payment: PaymentRecord) -> None:
        async with gate:
            await _check(services, payment)

    await asyncio.gather(*(check(payment) for payment in due))
    return len(due)


async def _check(services: Services, payment: PaymentRecord) -> None:
    limits = services.limits
    charge = charge_of(services, payment)
    gateway = services.gateway_named(payment.gateway)
    if payment.status == "not_sent":
        result = await send_charge(gateway, limits, charge)
    else:
        result = await retrieve_charge(gateway, limits, charge)
    past_bound = (
        payment.status != "not_sent"
        and payment.check_attempts > limits.payments.payment_check_attempts_max
    )
    if past_bound and result.outcome in UNRESOLVED and result.requires_action is None:
        # Still no answer: ask again slowly, and make it visible. A final answer, even a late
        # one, is always recorded: a payment is never left unresolved for good.
        await _flag_for_staff(services, payment)
        return
    await record_charge_result(services, payment.renewal_id, result)


async def retrieve_charge(
    gateway: PaymentGateway, limits: Limits, charge: ChargeRequest
) -> ChargeResult:
    """Ask the gateway what became of a charge; a failure in transit means 'unknown'."""
    try:
        async with asyncio.timeout(limits.payments.gateway_timeout_s):
            return await gateway.retrieve(charge)
    except (TimeoutError, OSError):
        return ChargeResult(GatewayOutcome.UNKNOWN, message="gateway did not answer")
    except TopupError as error:
        # The gateway would not say (e.g. it rejected the token): the money may still have been
        # taken, so the outcome stays unknown and is asked again; it must not stop the batch.
        return ChargeResult(
            GatewayOutcome.UNKNOWN, message=f"gateway refused to answer: {error.code}"
        )


async def _flag_for_staff(services: Services, payment: PaymentRecord) -> None:
    """Past the bound: keep a (slow) next check and make it visible to staff."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        await uow.payments.update(
            payment.id,
            flagged_for_staff=True,
            next_check_at=now
            + dt.timedelta(seconds=services.limits.payments.payment_staff_recheck_s),
            updated_at=now,
        )
        await uow.commit()
    services.on_event("payment_flagged_for_staff", {"renewal_id": payment.renewal_id})
