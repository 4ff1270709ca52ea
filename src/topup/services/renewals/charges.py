"""Charging a renewal's payment: the call to the gateway with a deadline, and recording what
it said (captured, declined, pending, waiting on the payer) in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from topup.domain import ledger
from topup.domain.errors import (
    TopupError,
)
from topup.domain.records import (
    JobKind,
    JobSubject,
    PaymentChanges,
    PaymentRecord,
    PaymentStatus,
    RenewalMove,
    RenewalRecord,
    payment_changed,
    renewal_moved,
)
from topup.domain.renewal import (
    RenewalStatus,
    Transition,
    backoff_s,
    estimate_activation,
)
from topup.limits import Limits
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    GatewayOutcome,
    PaymentGateway,
    UnitOfWork,
)
from topup.services.batching import Batcher
from topup.services.context import Services
from topup.services.renewals.reads import renewal_unknown
from topup.services.views import RenewalView


def activation_times_s(services: Services, method_code: str) -> tuple[int, int]:
    """(usual delay, late after) of a renewal paid by this method (R9): the method's own if
    its configuration gives them, else the platform's limits."""
    limits = services.limits.activation
    typical_s, late_s = limits.activation_typical_delay_s, limits.activation_late_after_s
    method = services.methods.get(method_code)
    if method is None:
        return typical_s, late_s
    return method.activation_times_s(typical_default_s=typical_s, late_default_s=late_s)


def charge_of(services: Services, payment: PaymentRecord) -> ChargeRequest:
    """The charge a stored payment stands for, to ask its gateway about it again (its token
    unsealed in memory only)."""
    return ChargeRequest(
        payment_id=payment.id,
        token=services.tokens.open(payment.token_encrypted),
        amount=payment.amount,
        description=f"renewal {payment.renewal_id}",
        requested_at=payment.requested_at,
        merchant_initiated=payment.merchant_initiated,
    )


async def send_charge(
    gateway: PaymentGateway, limits: Limits, charge: ChargeRequest
) -> ChargeResult:
    """Call the gateway with a deadline. Whatever goes wrong in transit means 'unknown'."""
    try:
        async with asyncio.timeout(limits.payments.gateway_timeout_s):
            return await gateway.charge(charge)
    except TimeoutError:
        return ChargeResult(GatewayOutcome.UNKNOWN, message="gateway timed out")
    except TopupError as error:  # the gateway refused the request itself: nothing was charged
        return ChargeResult(GatewayOutcome.DECLINED, decline_code=error.code, message=error.message)
    except OSError as error:
        return ChargeResult(
            GatewayOutcome.UNKNOWN, message=f"gateway transport error: {type(error).__name__}"
        )


async def record_charge_result(
    services: Services, renewal_id: str, result: ChargeResult
) -> RenewalView:
    """Apply what the gateway said. Safe to call twice or concurrently: the second call sees the
    renewal already moved on and changes nothing. Concurrent calls share one transaction."""
    return await _recorder(services).submit((renewal_id, result))


def _recorder(services: Services) -> Batcher[tuple[str, ChargeResult], RenewalView]:
    # One renewal at most once per batch: its second result waits for the next one.
    return services.batcher("charge_results", _record_all, key=lambda item: item[0])


@dataclass
class _Writes:
    """What recording a batch of payment outcomes changes, written set-based at the end."""

    payments: list[tuple[str, PaymentChanges]] = field(default_factory=list)
    moves: list[RenewalMove] = field(default_factory=list)
    entries: list[ledger.Entry] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)  # paid renewals whose receipt is e-mailed

    async def apply(self, uow: UnitOfWork, at: dt.datetime) -> None:
        await uow.ledger.record_many(self.entries, at=at)
        await uow.payments.update_many(self.payments)
        await uow.renewals.move_many(self.moves, at=at)
        for kind, renewal_ids in (
            (JobKind.ACTIVATE, self.activations),
            (JobKind.RECEIPT, self.receipts),
        ):
            subjects = [JobSubject.renewal(renewal_id) for renewal_id in renewal_ids]
            await uow.jobs.enqueue_many(kind=kind, subjects=subjects, at=at)


async def _record_all(
    services: Services, items: list[tuple[str, ChargeResult]]
) -> list[RenewalView | Exception]:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        renewal_ids = [renewal_id for renewal_id, _ in items]
        found: dict[
            str, tuple[RenewalRecord, PaymentRecord, str]
        ] = await uow.renewals.with_payments(renewal_ids, for_update=True)
        writes = _Writes()
        late: list[str] = []
        for renewal_id, result in items:
            if renewal_id in found:
                renewal, payment, _ = found[renewal_id]
                if renewal.status in OPEN_RENEWAL_STATUSES:
                    _Outcome(services, writes, renewal, payment, result, now).decide()
                elif _taken_after_close(renewal, payment, result):
                    # The payer approved after we gave up (a wallet, a late bank): the money is
                    # taken but the renewal is closed. Staff refund it; it is never left unseen.
                    writes.payments.append(
                        (
                            payment.id,
                            {
                                "status": PaymentStatus.LATE_SUCCESS,
                                "gateway_reference": result.gateway_reference,
                                "flagged_for_staff": True,
                                "updated_at": now,
                            },
                        )
                    )
                    late.append(renewal_id)
        await writes.apply(uow, now)
        timelines: dict[str, list[Transition]] = await uow.renewals.timelines(renewal_ids)
        await uow.commit()
    for renewal_id in late:
        services.on_event("payment_taken_after_close", {"renewal_id": renewal_id})
    return _views_after(items, found, writes, timelines, now)


def _views_after(
    items: list[tuple[str, ChargeResult]],
    found: dict[str, tuple[RenewalRecord, PaymentRecord, str]],
    writes: _Writes,
    timelines: dict[str, list[Transition]],
    now: dt.datetime,
) -> list[RenewalView | Exception]:
    """What the rows now hold, without reading them back."""
    renewals = {renewal_id: renewal for renewal_id, (renewal, _, _) in found.items()}
    payments = {renewal_id: payment for renewal_id, (_, payment, _) in found.items()}
    for move in writes.moves:
        renewals[move.renewal.id] = renewal_moved(move.renewal, move.to_status, move.values, at=now)
    renewal_of_payment = {payment.id: renewal_id for renewal_id, payment in payments.items()}
    for payment_id, values in writes.payments:
        payment = payments[renewal_of_payment[payment_id]]
        payments[payment.renewal_id] = payment_changed(payment, values)
    return [
        RenewalView(
            renewals[renewal_id],
            payments[renewal_id],
            timelines.get(renewal_id, []),
            found[renewal_id][2],
        )
        if renewal_id in found
        else renewal_unknown(renewal_id)
        for renewal_id, _ in items
    ]


def _taken_after_close(
    renewal: RenewalRecord, payment: PaymentRecord, result: ChargeResult
) -> bool:
    return (
        result.outcome is GatewayOutcome.SUCCEEDED
        and renewal.status in (RenewalStatus.DECLINED, RenewalStatus.CANCELLED)
        and payment.status is not PaymentStatus.LATE_SUCCESS
    )


OPEN_RENEWAL_STATUSES = (
    RenewalStatus.PENDING_PAYMENT,
    RenewalStatus.REQUIRES_ACTION,
    RenewalStatus.PAYMENT_PENDING,
)


@dataclass(frozen=True)
class _Outcome:
    """One payment outcome being recorded: the renewal and payment it is about, what the
    gateway said, and where its writes go."""

    services: Services
    writes: _Writes
    renewal: RenewalRecord
    payment: PaymentRecord
    result: ChargeResult
    now: dt.datetime

    def decide(self) -> None:
        limits = self.services.limits
        outcome = self.result.outcome
        age_s = (self.now - self.renewal.created_at).total_seconds()
        if outcome is GatewayOutcome.SUCCEEDED:
            self.capture()
        elif outcome is GatewayOutcome.DECLINED:
            self.close_unpaid(
                RenewalStatus.DECLINED,
                f"payment declined: {self.result.decline_code}",
                self.result.decline_code,
            )
        elif self.result.requires_action and age_s > limits.payments.requires_action_timeout_s:
            # The payer never completed the step: abandoned before payment, nothing was taken.
            self.close_unpaid(
                RenewalStatus.CANCELLED,
                f"the payer did not {self.result.requires_action} in time",
                None,
            )
        elif self.result.requires_action:
            self.await_payer()
        elif (
            outcome is GatewayOutcome.NOT_SENT
            and self.payment.check_attempts >= limits.payments.charge_send_attempts_max
        ):
            self.close_unpaid(
                RenewalStatus.DECLINED,
                "the payment gateway could not be reached; nothing was charged",
                "gateway_unreachable",
            )
        else:  # PENDING, UNKNOWN, or NOT_SENT with attempts left: ask (or send) again later
            self.check_later()

    def close_unpaid(self, status: RenewalStatus, reason: str, decline_code: str | None) -> None:
        """End a renewal on which no money was taken: declined or cancelled."""
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": (
                        PaymentStatus.DECLINED
                        if status is RenewalStatus.DECLINED
                        else PaymentStatus.CANCELLED
                    ),
                    "decline_code": decline_code,
                    "next_check_at": None,
                    "updated_at": self.now,
                },
            )
        )
        self.writes.moves.append(
            RenewalMove(self.renewal, status, reason, {"decline_code": decline_code})
        )

    def await_payer(self) -> None:
        """The payer must act: a payment password / 3-D Secure code (we are told the answer), or an
        approval in a wallet app (the provider tells us; we also ask it, with backoff, in case its
        webhook is lost). Past the time allowed, the renewal is cancelled."""
        limits = self.services.limits
        give_up_at = self.renewal.created_at + dt.timedelta(
            seconds=limits.payments.requires_action_timeout_s + 1
        )
        next_check_at = give_up_at
        if self.result.action_url is not None:
            delay_s = backoff_s(
                attempt=self.payment.check_attempts + 1,
                base_s=limits.payments.payment_check_base_s,
                cap_s=limits.payments.payment_check_cap_s,
                jitter_fraction=self.services.random.random(),
            )
            next_check_at = min(give_up_at, self.now + dt.timedelta(seconds=delay_s))
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": PaymentStatus.REQUIRES_ACTION,
                    "gateway_reference": self.result.gateway_reference,
                    "action_url": self.result.action_url,
                    "next_check_at": next_check_at,
                    "updated_at": self.now,
                },
            )
        )
        if self.renewal.status is not RenewalStatus.REQUIRES_ACTION:
            self.writes.moves.append(
                RenewalMove(
                    self.renewal,
                    RenewalStatus.REQUIRES_ACTION,
                    f"the payer must {self.result.requires_action}",
                )
            )

    def check_later(self) -> None:
        """Outcome not known yet: schedule the next question to the gateway, with backoff."""
        limits = self.services.limits
        delay_s = self.result.retry_after_s or backoff_s(
            attempt=self.payment.check_attempts + 1,
            base_s=limits.payments.payment_check_base_s,
            cap_s=limits.payments.payment_check_cap_s,
            jitter_fraction=self.services.random.random(),
        )
        outcome = self.result.outcome
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": PaymentStatus(outcome.value),
                    "gateway_reference": self.result.gateway_reference,
                    "next_check_at": self.now + dt.timedelta(seconds=delay_s),
                    "updated_at": self.now,
                },
            )
        )
        if (
            outcome is not GatewayOutcome.NOT_SENT
            and self.renewal.status is not RenewalStatus.PAYMENT_PENDING
        ):
            self.writes.moves.append(
                RenewalMove(
                    self.renewal,
                    RenewalStatus.PAYMENT_PENDING,
                    f"payment outcome not yet known ({outcome.value})",
                )
            )

    def capture(self) -> None:
        """Money taken: the capture entry, the renewal's move to activating and the activation job
        are written in one transaction (the transactional outbox)."""
        self.writes.entries.append(
            ledger.capture(
                renewal_id=self.renewal.id,
                card_id=self.renewal.card_id,
                gateway=self.payment.gateway,
                amount=self.renewal.amount,
            )
        )
        self.writes.payments.append(
            (
                self.payment.id,
                {
                    "status": PaymentStatus.SUCCEEDED,
                    "gateway_reference": self.result.gateway_reference,
                    "next_check_at": None,
                    "updated_at": self.now,
                },
            )
        )
        typical_s, late_s = activation_times_s(self.services, self.payment.method)
        estimate = estimate_activation(
            paid_at=self.now, typical_delay_s=typical_s, late_after_s=late_s
        )
        self.writes.moves.append(
            RenewalMove(
                self.renewal,
                RenewalStatus.ACTIVATING,
                f"payment captured ({self.result.gateway_reference or 'no reference'})",
                {
                    "paid_at": self.now,
                    "expected_by": estimate.expected_by,
                    "contact_after": estimate.contact_after,
                },
            )
        )
        self.writes.activations.append(self.renewal.id)
        if self.renewal.receipt_email:
            self.writes.receipts.append(self.renewal.id)
