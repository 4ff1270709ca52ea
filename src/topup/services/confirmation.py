"""The payer's answer to a payment password / 3-D Secure step (R7b).

The answer goes to the gateway, which checks it; it is never stored or logged. Wrong answers are
counted per payment card, by the key ``services.fingerprints`` makes from the PSP's card
fingerprint (the same whatever the expiry, the CVC or the token): after
``payment_password_attempts_max`` of them within ``payment_password_lock_s`` the card is locked for
that long, its renewal is declined, and new payments with it are refused until the lock ends, even
when it is tokenised again with another expiry.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from topup.domain.errors import ConflictError, InputError, TopupError
from topup.domain.renewal import RenewalStatus
from topup.ports import ChargeResult, GatewayOutcome
from topup.services.context import Services
from topup.services.renewals import (
    charge_of,
    payment_card_locked,
    record_charge_result,
    renewal_with_payment,
)
from topup.services.views import RenewalView

AUTHENTICATION_FAILED = "authentication_failed"


async def confirm_payment(services: Services, renewal_id: str, answer: str) -> RenewalView:
    """Pass the payer's answer to the gateway and record what it says."""
    limits = services.limits
    if not answer.strip() or len(answer) > limits.payments.payment_password_length_max:
        raise InputError(
            f"A payment password is 1 to {limits.payments.payment_password_length_max} characters.",
            code="payment_password_invalid",
            field="answer",
            params={"length_max": str(limits.payments.payment_password_length_max)},
        )
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        renewal, payment = await renewal_with_payment(uow, renewal_id)
        fingerprint = payment.instrument_fingerprint
        locked = await uow.payment_card_locks.locked([fingerprint] if fingerprint else [], now=now)
    if renewal.status is not RenewalStatus.REQUIRES_ACTION:
        raise ConflictError(
            f"This renewal is not waiting for a payment password (it is {renewal.status.value}).",
            code="renewal_not_awaiting_confirmation",
            params={"status": renewal.status.value},
        )
    if fingerprint in locked:
        raise payment_card_locked(locked[fingerprint], now)
    attempts = 0
    if fingerprint is not None:  # counted first, so parallel guesses cannot pass the limit
        attempts = await _count_attempt(services, fingerprint, now)
        if attempts > limits.payments.payment_password_attempts_max:
            raise payment_card_locked(
                now + dt.timedelta(seconds=limits.payments.payment_password_lock_s), now
            )
    charge = charge_of(services, payment)
    try:
        async with asyncio.timeout(limits.payments.gateway_timeout_s):
            result = await services.gateway_named(payment.gateway).confirm(charge, answer)
    except (TimeoutError, OSError):
        # Whether the gateway took the answer is unknown: the reconciler asks it later.
        result = ChargeResult(GatewayOutcome.UNKNOWN, message="gateway did not answer")
    except TopupError as error:
        result = ChargeResult(GatewayOutcome.UNKNOWN, message=f"gateway refused: {error.code}")
    wrong = (
        result.outcome is GatewayOutcome.DECLINED and result.decline_code == AUTHENTICATION_FAILED
    )
    if wrong and fingerprint is not None:
        await _after_wrong_answer(services, renewal_id, fingerprint, attempts, result, now)
    elif fingerprint is not None and result.outcome is GatewayOutcome.SUCCEEDED:
        async with services.unit_of_work() as uow:
            await uow.payment_card_locks.forget(fingerprint)
            await uow.commit()
    return await record_charge_result(services, renewal_id, result)


async def _count_attempt(services: Services, fingerprint: str, now: dt.datetime) -> int:
    """Count an answer about to be checked; returns the answers counted in the window."""
    window = dt.timedelta(seconds=services.limits.payments.payment_password_lock_s)
    async with services.unit_of_work() as uow:
        attempts: int = await uow.payment_card_locks.count_wrong_answer(
            fingerprint, now=now, window_start=now - window
        )
        await uow.commit()
    return attempts


async def _after_wrong_answer(
    services: Services,
    renewal_id: str,
    fingerprint: str,
    attempts: int,
    result: ChargeResult,
    now: dt.datetime,
) -> None:
    """Below the limit the payer may try again (the renewal keeps waiting); at the limit the
    payment card is locked and the renewal declined."""
    limits = services.limits
    window = dt.timedelta(seconds=limits.payments.payment_password_lock_s)
    if attempts >= limits.payments.payment_password_attempts_max:
        async with services.unit_of_work() as uow:
            await uow.payment_card_locks.lock(fingerprint, until=now + window, now=now)
            await uow.commit()
        await record_charge_result(services, renewal_id, result)  # declined
        raise payment_card_locked(now + window, now)
    left = limits.payments.payment_password_attempts_max - attempts
    raise InputError(
        f"The payment password is wrong. You have {left} more tries before this card is "
        "locked for a while.",
        code="payment_password_wrong",
        field="answer",
        params={"attempts_left": str(left)},
    )
