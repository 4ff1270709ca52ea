"""The sandbox wallet's approval page, as the adapter serves it: a reference it signed names the
payment; the payer's first answer is kept, sent at once as the webhook, and is what the wallet
says when asked; a forged or altered reference is nobody's."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping

from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.domain.money import Money
from topup.ports import ChargeRequest, GatewayOutcome, WalletApprovals, WalletDecision

NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)


def wallet(delivered: list[bytes]) -> SandboxWallet:
    async def deliver(body: bytes, headers: Mapping[str, str]) -> None:
        delivered.append(body)

    return SandboxWallet(
        secret=b"s" * 32,
        webhook_secret=b"w" * 32,
        approval_delay_s=3600.0,
        clock=lambda: NOW,
        deliver=deliver,
        approval_url="https://shop.example/sandbox/wallet/",
    )


def charge(sandbox: SandboxWallet, account: str = "+60123456781") -> ChargeRequest:
    token = sandbox.tokenize_account("tng", account).token
    return ChargeRequest("pay-1", token, Money(1000, "MYR"), "renewal r-1", NOW)


def reference_of(sandbox: SandboxWallet, request: ChargeRequest) -> str:
    result = asyncio.run(sandbox.charge(request))
    assert result.action_url is not None
    assert result.action_url.startswith("https://shop.example/sandbox/wallet/wapp_")
    return result.action_url.rsplit("/", 1)[1]


def test_the_approval_page_shows_the_payment_its_reference_names() -> None:
    sandbox = wallet([])
    assert isinstance(sandbox, WalletApprovals)
    approval = sandbox.approval(reference_of(sandbox, charge(sandbox)))
    assert approval is not None
    assert (approval.payment_id, approval.amount, approval.account_last4) == (
        "pay-1",
        Money(1000, "MYR"),
        "6781",
    )
    assert approval.provider == "tng" and approval.decision is WalletDecision.WAITING


def test_a_forged_or_altered_reference_is_nobodys() -> None:
    sandbox = wallet([])
    reference = reference_of(sandbox, charge(sandbox))
    payload, signature = reference.removeprefix("wapp_").split(".")
    assert sandbox.approval(reference[:-1] + ("A" if reference[-1] != "A" else "B")) is None
    assert sandbox.approval("wapp_" + payload[::-1] + "." + signature) is None
    assert sandbox.approval("anything") is None
    assert sandbox.approval("wapp_" + "x" * 500) is None


def test_the_first_answer_is_kept_sent_at_once_and_told_when_asked() -> None:
    delivered: list[bytes] = []
    sandbox = wallet(delivered)
    request = charge(sandbox)
    reference = reference_of(sandbox, request)
    refused = asyncio.run(sandbox.decide(reference, approve=False))
    assert refused.decision is WalletDecision.REFUSED
    again = asyncio.run(sandbox.decide(reference, approve=True))  # a second answer: no change
    assert again.decision is WalletDecision.REFUSED
    assert [json.loads(body)["type"] for body in delivered] == ["payment.failed"]
    asked = asyncio.run(sandbox.retrieve(request))
    assert asked.outcome is GatewayOutcome.DECLINED and asked.decline_code == "payer_declined"


def test_an_answer_and_the_automatic_webhook_share_one_event_id() -> None:
    delivered: list[bytes] = []
    sandbox = wallet(delivered)
    request = charge(sandbox)
    asyncio.run(sandbox.decide(reference_of(sandbox, request), approve=True))
    automatic, _ = sandbox.webhook(request)
    assert json.loads(delivered[0])["id"] == json.loads(automatic)["id"]
    assert json.loads(automatic)["type"] == "payment.succeeded"  # it agrees with the answer
