"""Activation and refund jobs from the transactional outbox.

A job is claimed with a lease (no transaction is held while the network or the gateway is called);
the outcome is then recorded in one transaction guarded by the job's and the renewal's status, so a
job that two workers ran, or that a killed worker left half done, credits the card exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from topup.domain import ledger
from topup.domain.cards import Card, CardKind, apply_bill_payment, apply_prepaid_renewal
from topup.domain.errors import (
    ConflictError,
    InputError,
    InvariantError,
    TopupError,
)
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.records import (
    JobKind,
    JobOutcome,
    JobRecord,
    JobRetry,
    JobStatus,
    JobSubject,
    PaymentRecord,
    PaymentStatus,
    RenewalMove,
    RenewalRecord,
)
from topup.domain.renewal import RefundCause, RenewalStatus, backoff_s, refund_reason
from topup.ports import (
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
    RefundOutcome,
    RefundResult,
    UnitOfWork,
)
from topup.services.auto_renewal.credit import refund_to_credit
from topup.services.batching import Batcher
from topup.services.context import Services
from topup.services.receipts import send_receipt
from topup.services.renewals import charge_of, renewal_unknown

# The timeline's reason for a refund job queued before jobs kept their reason (migration 0010).
UNRECORDED_REFUND_REASON = "activation failed permanently; payment refunded in full"


async def run_due_jobs(services: Services) -> int:
    """Claim a batch of due jobs and run them concurrently (bounded). Returns how many ran."""
    now = services.clock.now()
    limits = services.limits
    async with services.unit_of_work() as uow:
        jobs: list[JobRecord] = await uow.jobs.claim(
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.worker.job_lease_s),
            limit=limits.worker.worker_batch_size,
        )
        facts: dict[str, tuple[RenewalRecord, str, str]] = await uow.renewals.with_card_numbers(
            [job.renewal_id for job in jobs if job.kind is JobKind.ACTIVATE]
        )
        await uow.commit()
    if not jobs:
        return 0
    gate = asyncio.Semaphore(limits.worker.worker_concurrency)

    async def run(job: JobRecord) -> None:
        async with gate:
            if job.kind is JobKind.ACTIVATE:
                found = facts.get(job.renewal_id)
                if found is None:
                    raise InvariantError(f"job for missing renewal {job.renewal_id}")
                await _activate(services, job, *found)
            elif job.kind is JobKind.REFUND:
                await _refund(services, job)
            elif job.kind is JobKind.RECEIPT:
                await _send_receipt(services, job)
            else:
                raise InvariantError(f"no worker runs jobs of kind {job.kind.value!r}")

    await asyncio.gather(*(run(job) for job in jobs))
    return len(jobs)


async def _send_receipt(services: Services, job: JobRecord) -> None:
    """E-mail a paid renewal's receipt where its payer asked; a mail server that is down is
    tried again with backoff, up to ``receipt_attempts_max`` times."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = (await uow.renewals.get_many([job.renewal_id])).get(
            job.renewal_id
        )
    if renewal is None or not renewal.receipt_email:
        raise InvariantError(f"receipt job for renewal {job.renewal_id} with no e-mail")
    language = renewal.receipt_language or services.profile.default_locale
    try:
        await send_receipt(services, renewal.id, renewal.receipt_email, language)
    except TopupError as error:
        attempts_max = services.limits.activation.receipt_attempts_max
        if not error.retryable or job.attempts + 1 >= attempts_max:
            async with services.unit_of_work() as uow:
                await uow.jobs.finish(job, status=JobStatus.FAILED, at=now, error=error.code)
                await uow.commit()
            return
        delay = backoff_s(
            attempt=job.attempts + 1,
            base_s=services.limits.activation.activation_backoff_base_s,
            cap_s=services.limits.activation.activation_backoff_cap_s,
            jitter_fraction=services.random.random(),
        )
        retry = JobRetry(job.id, now + dt.timedelta(seconds=delay), True, error.code)
        await _rescheduling(services).submit(retry)
        return
    async with services.unit_of_work() as uow:
        await uow.jobs.finish(job, status=JobStatus.DONE, at=now)
        await uow.commit()


async def _close_settled(services: Services, job: JobRecord) -> None:
    """The renewal reached its end another way (another worker, a refund): nothing left to do."""
    async with services.unit_of_work() as uow:
        await uow.jobs.finish(
            job, status=JobStatus.DONE, at=services.clock.now(), error="renewal already settled"
        )
        await uow.commit()


async def _apply_on_network(services: Services, request: ProvisionRequest) -> ProvisionResult:
    """Ask the network to apply a renewal; a timeout or a broken connection is transient."""
    try:
        async with asyncio.timeout(services.limits.activation.network_timeout_s):
            return await services.network.apply(request)
    except TimeoutError:
        return ProvisionResult(ProvisionStatus.TRANSIENT_FAILURE, message="network timed out")
    except OSError as error:
        return ProvisionResult(
            ProvisionStatus.TRANSIENT_FAILURE, message=f"network error: {type(error).__name__}"
        )


async def _activate(
    services: Services, job: JobRecord, renewal: RenewalRecord, msisdn: str, iccid: str
) -> None:
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
    result = await _apply_on_network(services, request)
    now = services.clock.now()
    limits = services.limits
    overdue = (
        now - job.first_requested_at
    ).total_seconds() > limits.activation.activation_deadline_s
    if result.status is ProvisionStatus.APPLIED:
        await _crediting(services).submit(job)
    elif (
        result.status is ProvisionStatus.PERMANENT_FAILURE
        or overdue
        or (
            result.status is ProvisionStatus.TRANSIENT_FAILURE
            and job.attempts + 1 >= limits.activation.activation_attempts_max
        )
    ):
        reason = result.message or (
            "activation deadline passed" if overdue else result.status.value
        )
        # Refused for good, or not applied in time (a later renewal may go through).
        cause = (
            RefundCause.ACTIVATION_FAILED
            if result.status is ProvisionStatus.PERMANENT_FAILURE
            else RefundCause.ACTIVATION_TIMED_OUT
        )
        await _give_up(services, job, now, reason, cause)
    elif result.status is ProvisionStatus.IN_PROGRESS:
        ready_at = result.ready_at or now + dt.timedelta(
            seconds=limits.activation.activation_backoff_base_s
        )
        await _rescheduling(services).submit(JobRetry(job.id, max(ready_at, now), False, None))
    else:
        delay = backoff_s(
            attempt=job.attempts + 1,
            base_s=limits.activation.activation_backoff_base_s,
            cap_s=limits.activation.activation_backoff_cap_s,
            jitter_fraction=services.random.random(),
        )
        retry = JobRetry(
            job.id,
            now + dt.timedelta(seconds=delay),
            True,
            result.message or "transient network failure",
        )
        await _rescheduling(services).submit(retry)


def _rescheduling(services: Services) -> Batcher[JobRetry, None]:
    return services.batcher("job_retries", _reschedule_all, key=lambda retry: retry.job_id)


async def _reschedule_all(services: Services, retries: list[JobRetry]) -> list[None]:
    """Jobs the network is still working on, or failed for now: their next attempts, together."""
    async with services.unit_of_work() as uow:
        await uow.jobs.retry_many(retries, at=services.clock.now())
        await uow.commit()
    return [None for _ in retries]


def _crediting(services: Services) -> Batcher[JobRecord, None]:
    return services.batcher("activation_credits", _credit_all, key=lambda job: job.renewal_id)


@dataclass
class _Credits:
    """What crediting a batch changes, gathered renewal by renewal and written set-based."""

    completed: list[tuple[RenewalRecord, Card]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # renewal id -> why the card refused
    entries: list[ledger.Entry] = field(default_factory=list)
    moves: list[RenewalMove] = field(default_factory=list)


async def _credit_all(services: Services, jobs: list[JobRecord]) -> list[None]:
    """Credit the cards the network has applied renewals to: card changes, ledger entries,
    renewals completed and jobs done, for the whole batch in one transaction. A renewal the card
    can no longer take (e.g. its bill was paid another way) fails its job and queues its refund
    in the same transaction."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        open_jobs, mine = await _finish_applied(uow, jobs, now)
        cards = await uow.cards.get_many([renewal.card_id for renewal in mine], for_update=True)
        versions = {card_id: card.version for card_id, card in cards.items()}
        credits = _credit(services, mine, cards, now)
        changed = [
            (card, versions[card_id])
            for card_id, card in cards.items()
            if card.version != versions[card_id]
        ]
        await uow.cards.save_many(changed, at=now)
        await uow.ledger.record_many(credits.entries, at=now)
        await uow.renewals.move_many(credits.moves, at=now)
        await _refund_refused(uow, open_jobs, credits.refused, now)
        # A new period for each renewed prepaid card: its auto-renewal (if on) looks at it.
        await uow.auto_renewals.wake(
            [card.id for _, card in credits.completed if card.kind is CardKind.PREPAID], at=now
        )
        await uow.commit()
    for renewal, card in credits.completed:
        services.on_event(
            "activation_completed",
            {"renewal_id": renewal.id, "card": card.msisdn, "plan": renewal.plan_code},
        )
    for renewal_id, reason in credits.refused.items():
        services.on_event("activation_failed", {"renewal_id": renewal_id, "reason": reason})
    return [None for _ in jobs]


async def _finish_applied(
    uow: UnitOfWork, jobs: list[JobRecord], now: dt.datetime
) -> tuple[list[JobRecord], list[RenewalRecord]]:
    """Close the jobs of renewals the network applied; returns the jobs whose renewal was
    still activating, and the renewals this call is the one to credit (locked)."""
    renewals = await uow.renewals.get_many([job.renewal_id for job in jobs], for_update=True)
    open_jobs = [
        job
        for job in jobs
        if (renewal := renewals.get(job.renewal_id)) is not None
        and renewal.status is RenewalStatus.ACTIVATING
    ]
    open_ids = {job.id for job in open_jobs}
    settled_ids = [job.id for job in jobs if job.id not in open_ids]
    await uow.jobs.finish_many(
        settled_ids, status=JobStatus.DONE, at=now, error="renewal already settled"
    )
    # A job another worker finished first (its lease ran out) is not ours to credit.
    ours = await uow.jobs.finish_many(
        list(open_ids), status=JobStatus.DONE, at=now, outcome=JobOutcome.APPLIED
    )
    # The network applied these all the same: kept, so that `topup audit` reports one that was
    # refunded meanwhile (the subscriber would have the data and the money).
    await uow.jobs.record_outcome(
        settled_ids + [job_id for job_id in open_ids if job_id not in ours],
        JobOutcome.APPLIED,
        at=now,
    )
    return open_jobs, [renewals[job.renewal_id] for job in open_jobs if job.id in ours]


def _credit(
    services: Services, renewals: list[RenewalRecord], cards: dict[str, Card], now: dt.datetime
) -> _Credits:
    """Apply each renewal to its card (``cards`` is updated in place): one card may take
    several renewals, each seeing the one before."""
    credits = _Credits()
    for renewal in renewals:
        card = cards.get(renewal.card_id)
        if card is None:
            raise InvariantError(f"renewal {renewal.id} names a missing card")
        try:
            updated, destination = _apply(services, card, renewal, now)
        except ConflictError as error:
            credits.refused[renewal.id] = error.message
            continue
        cards[card.id] = updated
        credits.completed.append((renewal, card))
        credits.entries.append(
            ledger.activation(
                renewal_id=renewal.id,
                card_id=card.id,
                destination=destination,
                amount=renewal.amount,
            )
        )
        credits.moves.append(
            RenewalMove(
                renewal, RenewalStatus.COMPLETED, "applied by the network", {"completed_at": now}
            )
        )
    return credits


async def _refund_refused(
    uow: UnitOfWork, open_jobs: list[JobRecord], refused: dict[str, str], now: dt.datetime
) -> None:
    """Renewals the card could not take: their jobs failed, their refunds queued (rare: one
    statement each)."""
    await uow.jobs.mark_failed(
        [(job.id, refused[job.renewal_id]) for job in open_jobs if job.renewal_id in refused],
        at=now,
        outcome=JobOutcome.CARD_REFUSED,
    )
    for renewal_id, why in refused.items():
        await uow.jobs.enqueue(
            kind=JobKind.REFUND,
            subject=JobSubject.renewal(renewal_id),
            at=now,
            reason=refund_reason(RefundCause.CARD_REFUSED, why),
        )


def _apply(
    services: Services, card: Card, renewal: RenewalRecord, now: dt.datetime
) -> tuple[Card, str]:
    """The card after the renewal, and the account its money goes to. Raises ConflictError when
    the card cannot take it."""
    amount = renewal.amount
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
        return updated, destination
    if amount > card.bill_due:
        raise ConflictError("the bill was paid another way", code="bill_already_paid")
    return apply_bill_payment(card, at=now, amount=amount), ledger.card_receivable_account(card.id)


async def _give_up(
    services: Services, job: JobRecord, now: dt.datetime, reason: str, cause: RefundCause
) -> None:
    """Activation will never happen: close the job and queue the refund in the same transaction."""
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(job.renewal_id, for_update=True)
        if not await uow.jobs.finish(job, status=JobStatus.FAILED, at=now, error=reason):
            return
        if renewal is not None and renewal.status is RenewalStatus.ACTIVATING:
            await uow.jobs.enqueue(
                kind=JobKind.REFUND,
                subject=job.subject,
                at=now,
                reason=refund_reason(cause, reason),
            )
        await uow.commit()
    services.on_event("activation_failed", {"renewal_id": job.renewal_id, "reason": reason})


async def _refund(services: Services, job: JobRecord) -> None:
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(job.renewal_id)
        payment = await uow.payments.for_renewal(job.renewal_id)
    if renewal is None or payment is None:
        raise InvariantError(f"refund job for missing renewal {job.renewal_id}")
    if renewal.status is not RenewalStatus.ACTIVATING:
        await _close_settled(services, job)
        return
    if payment.gateway == ledger.CARD_CREDIT_GATEWAY:
        # Paid from the card's own credit: no gateway holds the money; it goes back to the card.
        reason = job.reason or UNRECORDED_REFUND_REASON
        if await refund_to_credit(services, job, reason):
            services.on_event("renewal_refunded", {"renewal_id": job.renewal_id, "reason": reason})
        return
    charge = charge_of(services, payment)
    try:
        async with asyncio.timeout(services.limits.payments.gateway_timeout_s):
            gateway = services.gateway_named(payment.gateway)
            result = await gateway.refund(refund_id=f"refund-{renewal.id}", charge=charge)
    except (TimeoutError, OSError, TopupError) as error:
        result = RefundResult(RefundOutcome.UNKNOWN, message=type(error).__name__)
    if result.outcome is RefundOutcome.SUCCEEDED:
        await _record_refund(services, job, payment, result)
    else:
        await _refund_later(services, job, payment, result)


async def _record_refund(
    services: Services, job: JobRecord, payment: PaymentRecord, result: RefundResult
) -> None:
    """The gateway returned the money: ledger entry, payment, renewal and job in one
    transaction, the renewal's timeline giving the refund's cause (``job.reason``)."""
    now = services.clock.now()
    reason = job.reason or UNRECORDED_REFUND_REASON
    async with services.unit_of_work() as uow:
        locked: RenewalRecord | None = await uow.renewals.get(job.renewal_id, for_update=True)
        if locked is None or locked.status is not RenewalStatus.ACTIVATING:
            await uow.jobs.finish(
                job, status=JobStatus.DONE, at=now, error="renewal already settled"
            )
            await uow.commit()
            return
        if not await uow.jobs.finish(job, status=JobStatus.DONE, at=now):
            return
        entry = ledger.refund(
            renewal_id=locked.id,
            card_id=locked.card_id,
            gateway=payment.gateway,
            amount=locked.amount,
            reason=reason,
        )
        await uow.ledger.record(entry, at=now)
        await uow.payments.update(
            payment.id,
            status=PaymentStatus.REFUNDED,
            refund_reference=result.gateway_reference,
            updated_at=now,
        )
        await uow.renewals.move(locked, RenewalStatus.REFUNDED, at=now, reason=reason)
        await uow.commit()
    services.on_event("renewal_refunded", {"renewal_id": job.renewal_id, "reason": reason})


async def _refund_later(
    services: Services, job: JobRecord, payment: PaymentRecord, result: RefundResult
) -> None:
    """The refund failed or its outcome is unknown: asked again (the refund id is the
    gateway's idempotency key), with backoff, and flagged to staff after many attempts."""
    now = services.clock.now()
    limits = services.limits
    delay = backoff_s(
        attempt=min(job.attempts + 1, 30),
        base_s=limits.activation.activation_backoff_base_s,
        cap_s=limits.activation.activation_backoff_cap_s,
        jitter_fraction=services.random.random(),
    )
    async with services.unit_of_work() as uow:
        if job.attempts + 1 >= limits.activation.refund_attempts_max:
            # Keep trying, slowly, and make it visible: money we owe is never dropped.
            await uow.payments.update(payment.id, flagged_for_staff=True, updated_at=now)
            delay = limits.payments.payment_staff_recheck_s
        await uow.jobs.retry_later(
            job,
            at=now,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            failed=True,
            error=result.message or result.outcome.value,
        )
        await uow.commit()


async def request_refund(services: Services, renewal_id: str, *, reason: str) -> str:
    """Staff give up on a paid renewal whose activation has not been sent: its activation job
    is withdrawn and its refund queued, in one transaction, and the refund's timeline gives the
    staff's reason. Asking twice, or concurrently, queues one refund. Once a worker has claimed
    the activation (it may be on its way to the network) the answer is
    ``activation_already_sent``: the claim and the withdrawal are decided by one guarded
    UPDATE of the job's row, so exactly one of them wins. Returns ``queued`` or
    ``already_queued``."""
    reason = _checked_reason(services, reason)
    now = services.clock.now()
    subject = JobSubject.renewal(renewal_id)
    async with services.unit_of_work() as uow:
        renewal: RenewalRecord | None = await uow.renewals.get(renewal_id, for_update=True)
        if renewal is None:
            raise renewal_unknown(renewal_id)
        if renewal.status is RenewalStatus.REFUNDED:
            return "already_queued"
        if renewal.status is not RenewalStatus.ACTIVATING:
            raise ConflictError(
                f"Only a paid renewal that has not been applied yet can be refunded here; this "
                f"one is {renewal.status.value}.",
                code="renewal_not_refundable",
                params={"status": renewal.status.value},
            )
        jobs: list[JobRecord] = await uow.jobs.for_subject(subject)
        if any(job.kind is JobKind.REFUND for job in jobs):
            return "already_queued"
        for job in jobs:
            if job.kind is JobKind.ACTIVATE and not await uow.jobs.withdraw_unclaimed(
                job.id, at=now, error=f"withdrawn for a staff refund: {reason}"
            ):
                raise _activation_already_sent()
        await uow.jobs.enqueue(
            kind=JobKind.REFUND,
            subject=subject,
            at=now,
            reason=refund_reason(RefundCause.STAFF_REQUEST, reason),
        )
        await uow.commit()
    services.on_event("refund_requested", {"renewal_id": renewal_id, "reason": reason})
    return "queued"


def _checked_reason(services: Services, reason: str) -> str:
    reason = reason.strip()
    length_max = services.limits.activation.refund_reason_length_max
    if not reason or len(reason) > length_max:
        raise InputError(
            f"say why, in 1 to {length_max} characters",
            code="refund_reason_invalid",
            field="reason",
            params={"length_max": str(length_max)},
        )
    return reason


def _activation_already_sent() -> ConflictError:
    # A worker has sent it to the network (or is sending it): the network may apply it whatever
    # we do now, so refunding could give the data and the money back.
    return ConflictError(
        "This renewal has already been sent to the network; it will be applied, or refunded "
        "automatically if the network refuses it.",
        code="activation_already_sent",
    )
