"""E-wallet payments, on fakes: the provider's webhook and the payer's return, in either order,
capture once and activate once; a payer who declines in the wallet gets a declined renewal."""

from __future__ import annotations

import pytest

from tests.unit.fakes import OnFakes, on_fakes
from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.domain.ledger import EntryKind
from topup.domain.renewal import RenewalStatus
from topup.ports import ChargeRequest
from topup.services.renewals import RenewalRequest, get_renewal, renew
from topup.services.wallets import handle_webhook, payer_returned

APPROVAL_DELAY_S = 60.0
ACCOUNT = "60123456781"
DECLINING_ACCOUNT = "60123450000"


def wallet_request(key: str, account: str = ACCOUNT) -> RenewalRequest:
    return RenewalRequest(
        card_number="+60123456789",
        plan_code="pack_5gb_7d",
        payment=None,
        method="ewallet:tng",
        wallet_account=account,
        idempotency_key=key,
    )


async def the_webhook(fakes: OnFakes, renewal_id: str) -> tuple[bytes, dict[str, str]]:
    """What the provider posts once the payer has answered, signed now."""
    payment = next(p for p in fakes.committed.payments.values() if p.renewal_id == renewal_id)
    wallet = fakes.services.gateways["sandbox_wallet"]
    assert isinstance(wallet, SandboxWallet)
    charge = ChargeRequest(
        payment_id=payment.id,
        token=fakes.services.tokens.open(payment.token_encrypted),
        amount=payment.amount,
        description="",
        requested_at=payment.requested_at,
    )
    return wallet.webhook(charge, sent_at=fakes.clock.now())


@pytest.mark.parametrize("first", ["webhook", "return"])
async def test_a_webhook_and_the_payers_return_in_either_order_pay_once(first: str) -> None:
    fakes = await on_fakes(wallet_approval_delay_s=APPROVAL_DELAY_S)
    waiting = await renew(fakes.services, wallet_request(f"order-{first}"))
    assert waiting.renewal.status is RenewalStatus.REQUIRES_ACTION
    fakes.clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(fakes, waiting.id)
    if first == "webhook":
        assert await handle_webhook(fakes.services, "sandbox_wallet", body, headers) == "recorded"
        await payer_returned(fakes.services, waiting.id)
    else:
        await payer_returned(fakes.services, waiting.id)
        assert await handle_webhook(fakes.services, "sandbox_wallet", body, headers) == "recorded"
    assert fakes.entries(EntryKind.CAPTURE) == [waiting.id]
    assert fakes.jobs("activate") == [waiting.id]
    await fakes.drain()
    assert (await get_renewal(fakes.services, waiting.id)).renewal.status is (
        RenewalStatus.COMPLETED
    )
    assert fakes.entries(EntryKind.ACTIVATION) == [waiting.id]


async def test_the_same_webhook_twice_is_applied_once() -> None:
    fakes = await on_fakes(wallet_approval_delay_s=APPROVAL_DELAY_S)
    waiting = await renew(fakes.services, wallet_request("twice"))
    fakes.clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(fakes, waiting.id)
    assert await handle_webhook(fakes.services, "sandbox_wallet", body, headers) == "recorded"
    assert await handle_webhook(fakes.services, "sandbox_wallet", body, headers) == "duplicate"
    assert fakes.entries(EntryKind.CAPTURE) == [waiting.id]


async def test_a_payer_who_declines_in_the_wallet_gets_a_declined_renewal() -> None:
    fakes = await on_fakes(wallet_approval_delay_s=APPROVAL_DELAY_S)
    waiting = await renew(fakes.services, wallet_request("declines", DECLINING_ACCOUNT))
    fakes.clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(fakes, waiting.id)
    await handle_webhook(fakes.services, "sandbox_wallet", body, headers)
    declined = await get_renewal(fakes.services, waiting.id)
    assert declined.renewal.status is RenewalStatus.DECLINED
    assert declined.renewal.decline_code == "payer_declined"
    assert fakes.entries(EntryKind.CAPTURE) == []
