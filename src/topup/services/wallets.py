"""E-wallet payments complete outside topup: the payer approves in the wallet's app, then the
provider tells us by a signed webhook, and the payer's browser comes back to us. Either may come
first, twice, or at the same moment; both go through ``record_charge_result``, which moves a
renewal once, so there is one capture and one activation (R7a, R9)."""

from __future__ import annotations

from collections.abc import Mapping

from topup.domain.errors import NotFoundError
from topup.ports import ChargeRequest
from topup.services.context import Services
from topup.services.reconcile import retrieve_charge
from topup.services.renewals import record_charge_result
from topup.services.views import RenewalView


async def handle_webhook(
    services: Services, gateway_name: str, body: bytes, headers: Mapping[str, str]
) -> str:
    """Check and apply a gateway's webhook. Returns ``recorded``, ``duplicate`` (this event was
    handled before: a retry or a replay) or ``unknown_payment``. A bad signature, a stale
    timestamp or a malformed body raises InputError and changes nothing."""
    gateway = services.gateways.get(gateway_name)
    if gateway is None:
        raise NotFoundError(
            f"no gateway {gateway_name!r} sends webhooks here",
            code="gateway_unknown",
            params={"gateway": gateway_name},
        )
    now = services.clock.now()
    event = gateway.parse_webhook(body, headers, now)
    async with services.unit_of_work() as uow:
        payment = await uow.payments.by_id(event.payment_id)
        if payment is None or payment.gateway != gateway_name:
            return "unknown_payment"  # nothing to apply; the gateway need not send it again
        first = await uow.webhooks.first_time(
            gateway=gateway_name, event_id=event.event_id, payment_id=payment.id, at=now
        )
        await uow.commit()
    if not first:
        return "duplicate"
    # Should this fail, the payment still has a next check: the reconciler asks the gateway.
    await record_charge_result(services, payment.renewal_id, event.result)
    return "recorded"


async def payer_returned(services: Services, renewal_id: str) -> RenewalView:
    """The payer is back from the wallet app: ask the provider how it went and record it."""
    async with services.unit_of_work() as uow:
        found = await uow.renewals.with_payments_for_update([renewal_id])
    if renewal_id not in found:
        raise NotFoundError(
            f"no renewal {renewal_id}",
            code="renewal_unknown",
            field="renewal_id",
            params={"renewal": renewal_id},
        )
    _, payment, _ = found[renewal_id]
    charge = ChargeRequest(
        payment_id=payment.id,
        token=services.tokens.open(payment.token_encrypted),
        amount=payment.amount,
        description=f"renewal {renewal_id}",
        requested_at=payment.requested_at,
    )
    gateway = services.gateway_named(payment.gateway)
    result = await retrieve_charge(gateway, services.limits, charge)
    return await record_charge_result(services, renewal_id, result)
