"""E-wallet payments complete outside topup: the payer approves in the wallet's app, then the
provider tells us by a signed webhook, and the payer's browser comes back to us. Either may come
first, twice, or at the same moment; both go through ``record_charge_result``, which moves a
renewal once, so there is one capture and one activation (R7a, R9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from topup.domain.errors import NotFoundError
from topup.domain.renewal import RenewalStatus
from topup.ports import GatewayEvent, WalletApproval, WalletApprovals
from topup.services.context import Services
from topup.services.reconcile import retrieve_charge
from topup.services.renewals import (
    charge_of,
    get_renewal,
    record_charge_result,
    renewal_with_payment,
)
from topup.services.views import RenewalView


async def handle_webhook(
    services: Services, gateway_name: str, body: bytes, headers: Mapping[str, str]
) -> str:
    """Check and apply a gateway's webhook. Returns ``recorded``, ``duplicate`` (this event was
    handled before: a retry or a replay) or ``unknown_payment``. A bad signature, a stale
    timestamp or a malformed body raises InputError and changes nothing. Concurrent webhooks
    are noted together in one transaction (group commit)."""
    gateway = services.gateways.get(gateway_name)
    if gateway is None:
        raise NotFoundError(
            f"no gateway {gateway_name!r} sends webhooks here",
            code="gateway_unknown",
            params={"gateway": gateway_name},
        )
    event = gateway.parse_webhook(body, headers, services.clock.now())
    batcher = services.batcher(
        "webhook_events", _note_all, key=lambda arrival: (arrival.gateway, arrival.event.event_id)
    )
    outcome, renewal_id = await batcher.submit(_Arrival(gateway_name, event))
    if renewal_id is not None and event.result is not None:
        # Should this fail, the payment still has a next check: the reconciler asks the gateway.
        await record_charge_result(services, renewal_id, event.result)
    return outcome


@dataclass(frozen=True)
class _Arrival:
    gateway: str
    event: GatewayEvent


async def _note_all(
    services: Services, arrivals: list[_Arrival]
) -> list[tuple[str, str | None] | Exception]:
    """Remember each event once; say which renewal each new one is about."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        payments = await uow.payments.by_ids([arrival.event.payment_id for arrival in arrivals])
        ours = [
            arrival
            for arrival in arrivals
            if arrival.event.payment_id in payments
            and payments[arrival.event.payment_id].gateway == arrival.gateway
        ]
        first = await uow.webhooks.first_times(
            [(a.gateway, a.event.event_id, a.event.payment_id) for a in ours], at=now
        )
        await uow.commit()
    answers: list[tuple[str, str | None] | Exception] = []
    for arrival in arrivals:
        payment = payments.get(arrival.event.payment_id)
        if payment is None or payment.gateway != arrival.gateway:
            answers.append(("unknown_payment", None))  # the gateway need not send it again
        elif (arrival.gateway, arrival.event.event_id) in first:
            answers.append(("recorded", payment.renewal_id))
        else:
            answers.append(("duplicate", None))
    return answers


WAITING = (RenewalStatus.REQUIRES_ACTION, RenewalStatus.PAYMENT_PENDING)


async def payer_returned(services: Services, renewal_id: str) -> RenewalView:
    """The payer is back from the wallet app: ask the provider how it went and record it."""
    async with services.unit_of_work() as uow:
        renewal, payment = await renewal_with_payment(uow, renewal_id)
    if renewal.status not in WAITING or payment.status == "not_sent":
        return await get_renewal(services, renewal_id)  # nothing to ask the wallet about
    charge = charge_of(services, payment)
    gateway = services.gateway_named(payment.gateway)
    result = await retrieve_charge(gateway, services.limits, charge)
    return await record_charge_result(services, renewal_id, result)


# --- a wallet's approval page served on this site (the sandbox wallet's) ----------------------


def _approval_wallets(services: Services) -> list[WalletApprovals]:
    return [
        gateway for gateway in services.gateways.values() if isinstance(gateway, WalletApprovals)
    ]


def approval_unknown() -> NotFoundError:
    return NotFoundError(
        "no wallet here asked for this approval",
        code="wallet_approval_unknown",
        field="reference",
        params={},
    )


def wallet_approval(services: Services, reference: str) -> WalletApproval:
    """The approval a wallet whose page this site serves issued under ``reference``; else
    ``wallet_approval_unknown`` (404)."""
    for wallet in _approval_wallets(services):
        found = wallet.approval(reference)
        if found is not None:
            return found
    raise approval_unknown()


async def answer_in_wallet(services: Services, reference: str, *, approve: bool) -> WalletApproval:
    """The payer's answer on the wallet's approval page; the wallet's webhook records it (once,
    whatever else arrives: ``record_charge_result``)."""
    for wallet in _approval_wallets(services):
        if wallet.approval(reference) is not None:
            return await wallet.decide(reference, approve=approve)
    raise approval_unknown()
