"""Activation and refund jobs from the transactional outbox.

A job is claimed with a lease (no transaction is held while the network or the gateway is called);
the outcome is then recorded in one transaction guarded by the job's and the renewal's status, so a
job that two workers ran, or that a killed worker left half done, credits the card exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

from topup.domain import ledger
from topup.domain.cards import CardKind, apply_bill_payment, apply_prepaid_renewal
from topup.domain.errors import ConflictError, InvariantError, TopupError
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.records import JobRecord, RenewalRecord
from topup.domain.renewal import RenewalStatus, backoff_s
from topup.ports import (
    ChargeRequest,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
    RefundOutcome,
    RefundResult,
)
from topup.services.context import Services

ACTIVATE = "activate"
REFUND = "refund"


async def run_due_jobs(services: Services) -> int:
    """Claim a batch of due jobs and run them concurrently (bounded). Returns how many ran."""
    now = services.clock.now()
    limits = services.limits
    async with services.unit_of_work() as uow:
        jobs: list[JobRecord] = await uow.jobs.claim(
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.job_lease_s),
            limit=limits.worker_batch_size,
        )
        await uow.commit()
    if not jobs:
        return 0
    gate = asyncio.Semaphore(limits.worker_concurrency)

    async def run(job: JobRecord) -> None:
        async with gate:
            if job.kind == ACTIVATE:
                await _activate(services, job)
            elif job.kind == REFUND:
                await _refund(services, job)
            else:
                raise InvariantError(f"unknown job kind {job.kind!r}")

    await asyncio.gather(*(run(job) for job in jobs))
    return len(jobs)


async def _load(services: Services, renewal_id: str) -> tuple[RenewalRecord, str, str]:
    async with services.unit_of_work() as uow:
        facts: tuple[RenewalRecord, str, str] | None = await uow.renewals.activation_facts(
            renewal_id
        )
    if facts is None:
        raise InvariantError(f"job for missing renewal {renewal_id}")
    return facts


async def _close_settled(services: Services, job: JobRecord) -> None:
    """The renewal reached its end another way (another worker, a refund): nothing left to do."""
    async with services.unit_of_work() as uow:
        await uow.jobs.finish(
            job, status="done", at=services.clock.now(), error="renewal already settled"
        )
        await uow.commit()


async def _activate(services: Services, job: JobRecord) -> None:
    renewal, msisdn, iccid = await _load(services, job.renewal_id)
    if renewal.status is not RenewalStatus.ACTIVATING:
        await _close_settled(services, job)
        return
    request = ProvisionRequest(
        activation_id=renewal.id,
        msisdn=msisdn,
        iccid=iccid,
        plan_code=renewal.plan_code,
        data_quota_mb=renewal.data_quota_mb,
        validity_days=renewal.validity_days,
        first_requested_at=job.first_requested_at,
        attempt=job.attempts + 1,
    )
    try:
        async with asyncio.timeout(services.limits.network_timeout_s):
            result = await services.network.apply(request)
    except TimeoutError:
        result = ProvisionResult(ProvisionStatus.TRANSIENT_FAILURE, message="network timed out")
    except OSError as error:
        result = ProvisionResult(
            ProvisionStatus.TRANSIENT_FAILURE, message=f"network error: {type(error).__name__}"
        )
    now = services.clock.now()
    limits = services.limits
    overdue = (now - job.first_requested_at).total_seconds() > limits.activation_deadline_s
    if result.status is ProvisionStatus.APPLIED:
        await _complete(services, job, now)
    elif (
        result.status is ProvisionStatus.PERMANENT_FAILURE
        or overdue
        or (
            result.status is ProvisionStatus.TRANSIENT_FAILURE
            and job.attempts + 1 >= limits.activation_attempts_max
        )
    ):
        reason = result.message or (
            "activation deadline passed" if overdue else result.status.value
        )
        await _give_up(services, job, now, reason)
    elif result.status is ProvisionStatus.IN_PROGRESS:
        ready_at = result.ready_at or now + dt.timedelta(seconds=limits.activation_backoff_base_s)
        async with services.unit_of_work() as uow:
            await uow.jobs.retry_later(
                job, at=now, next_attempt_at=max(ready_at, now), failed=False, error=None
            )
            await uow.commit()
    else:
        delay = backoff_s(
            attempt=job.attempts + 1,
            base_s=limits.activation_backoff_base_s,
            cap_s=limits.activation_backoff_cap_s,
            jitter_fraction=services.random.random(),
        )
        async with services.unit_of_work() as uow:
            await uow.jobs.retry_later(
                job,
                at=now,
                next_attempt_at=now + dt.timedelta(seconds=delay),
                failed=True,
                error=result.message or "transient network failure",
            )
            await uow.commit()


async def _complete(services: Services, job: JobRecord, now: dt.datetime) -> None:
    refusal = await _credit(services, job, now)
    if refusal is not None:
        # Only once the credit's unit of work is closed: holding one connection while waiting
        # for another lets a batch of refusals exhaust the pool and wait on each other.
        await _give_up(services, replace(job, status="queued"), now, refusal)


async def _credit(services: Services, job: JobRecord, now: dt.datetime) -> str | None:
    """Credit the card: card change, ledger entry, renewal completed, job done: one transaction.
    Returns why the card cannot take the renewal (nothing written), or None."""
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(job.renewal_id, for_update=True)
        if renewal is None or renewal.status is not RenewalStatus.ACTIVATING:
            await uow.jobs.finish(job, status="done", at=now, error="renewal already settled")
            await uow.commit()
            return None
        if not await uow.jobs.finish(job, status="done", at=now):
            return None  # another worker finished it first
        card = await uow.cards.get(renewal.card_id, for_update=True)
        if card is None:
            raise InvariantError(f"renewal {renewal.id} names a missing card")
        amount = renewal.amount
        try:
            if card.kind is CardKind.PREPAID:
                credit = amount if renewal.kind is PlanKind.RELOAD else Money.zero(card.currency)
                updated = apply_prepaid_renewal(
                    card,
                    at=now,
                    grace_period_days=services.profile.grace_period_days,
                    validity_days=renewal.validity_days,
                    data_quota_mb=renewal.data_quota_mb,
                    credit=credit,
                    paid_at=renewal.paid_at,
                )
                destination = (
                    ledger.card_credit_account(card.id)
                    if renewal.kind is PlanKind.RELOAD
                    else ledger.revenue_account(renewal.id)
                )
            else:
                if amount > card.bill_due:
                    raise ConflictError("the bill was paid another way", code="bill_already_paid")
                updated = apply_bill_payment(card, at=now, amount=amount)
                destination = ledger.card_receivable_account(card.id)
        except ConflictError as error:
            return error.message  # leaving the unit of work uncommitted rolls it back
        await uow.cards.save(updated, expected_version=card.version, at=now)
        await uow.ledger.record(
            ledger.activation(
                renewal_id=renewal.id, card_id=card.id, destination=destination, amount=amount
            ),
            at=now,
        )
        await uow.renewals.move(
            renewal,
            RenewalStatus.COMPLETED,
            at=now,
            reason="applied by the network",
            completed_at=now,
        )
        await uow.commit()
    services.on_event(
        "activation_completed",
        {"renewal_id": renewal.id, "card": card.msisdn, "plan": renewal.plan_code},
    )
    return None


async def _give_up(services: Services, job: JobRecord, now: dt.datetime, reason: str) -> None:
    """Activation will never happen: close the job and queue the refund in the same transaction."""
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(job.renewal_id, for_update=True)
        if not await uow.jobs.finish(job, status="failed", at=now, error=reason):
            return
        if renewal is not None and renewal.status is RenewalStatus.ACTIVATING:
            await uow.jobs.enqueue(kind=REFUND, renewal_id=renewal.id, at=now)
        await uow.commit()
    services.on_event("activation_failed", {"renewal_id": job.renewal_id, "reason": reason})


async def _refund(services: Services, job: JobRecord) -> None:
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(job.renewal_id)
        payment = await uow.payments.for_renewal(job.renewal_id)
    if renewal is None or payment is None:
        raise InvariantError(f"refund job for missing renewal {job.renewal_id}")
    now = services.clock.now()
    if renewal.status is not RenewalStatus.ACTIVATING:
        await _close_settled(services, job)
        return
    charge = ChargeRequest(
        payment_id=payment.id,
        token=services.tokens.open(payment.token_encrypted),
        amount=payment.amount,
        description=f"renewal {renewal.id}",
        requested_at=payment.requested_at,
    )
    try:
        async with asyncio.timeout(services.limits.gateway_timeout_s):
            result = await services.gateway.refund(refund_id=f"refund-{renewal.id}", charge=charge)
    except (TimeoutError, OSError, TopupError) as error:
        result = RefundResult(RefundOutcome.UNKNOWN, message=type(error).__name__)
    now = services.clock.now()
    limits = services.limits
    if result.outcome is RefundOutcome.SUCCEEDED:
        async with services.unit_of_work() as uow:
            locked: RenewalRecord | None = await uow.renewals.get(job.renewal_id, for_update=True)
            if locked is None or locked.status is not RenewalStatus.ACTIVATING:
                await uow.jobs.finish(job, status="done", at=now, error="renewal already settled")
                await uow.commit()
                return
            if not await uow.jobs.finish(job, status="done", at=now):
                return
            await uow.ledger.record(
                ledger.refund(
                    renewal_id=locked.id,
                    card_id=locked.card_id,
                    gateway=payment.gateway,
                    amount=locked.amount,
                ),
                at=now,
            )
            await uow.payments.update(
                payment.id,
                status="refunded",
                refund_reference=result.gateway_reference,
                updated_at=now,
            )
            await uow.renewals.move(
                locked,
                RenewalStatus.REFUNDED,
                at=now,
                reason="activation failed permanently; payment refunded in full",
            )
            await uow.commit()
        services.on_event("renewal_refunded", {"renewal_id": job.renewal_id})
        return
    delay = backoff_s(
        attempt=min(job.attempts + 1, 30),
        base_s=limits.activation_backoff_base_s,
        cap_s=limits.activation_backoff_cap_s,
        jitter_fraction=services.random.random(),
    )
    async with services.unit_of_work() as uow:
        if job.attempts + 1 >= limits.refund_attempts_max:
            # Keep trying, slowly, and make it visible: money we owe is never dropped.
            await uow.payments.update(payment.id, flagged_for_staff=True, updated_at=now)
            delay = limits.payment_staff_recheck_s
        await uow.jobs.retry_later(
            job,
            at=now,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            failed=True,
            error=result.message or result.outcome.value,
        )
        await uow.commit()
