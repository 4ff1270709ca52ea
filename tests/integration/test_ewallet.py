"""E-wallet payments, on SQLite and PostgreSQL: approval in the wallet app, then a signed webhook
and the payer's return, in either order, twice, or at once, give one capture and one activation;
a stale or forged webhook changes nothing; a wallet account's daily limit holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.bootstrap import MIGRATIONS_DIRECTORY, Application
from topup.domain.errors import TopupError
from topup.entrypoints.views_json import renewal_json
from topup.entrypoints.worker import work_once
from topup.ports import ChargeRequest
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, renew
from topup.services.wallets import handle_webhook, payer_returned

APPROVAL_DELAY_S = 60.0
ACCOUNT = "60123456781"
DUPLICATES = 20
WORK_ROUNDS_MAX = 20
MALAYSIAN_METHODS = Path(MIGRATIONS_DIRECTORY).parent / "src" / "topup" / "methods" / "my.toml"


async def wallet_app(make_app: AppFactory, **settings: object) -> tuple[Application, FixedClock]:
    clock = FixedClock(START)
    application = make_app(clock=clock, wallet_approval_delay_s=APPROVAL_DELAY_S, **settings)
    await load_demo(application.services)
    return application, clock


def order(key: str, account: str = ACCOUNT, plan: str = "pack_5gb_7d") -> RenewalRequest:
    return RenewalRequest(
        card_number="+60123456789",
        plan_code=plan,
        payment=None,
        method="ewallet:tng",
        wallet_account=account,
        idempotency_key=key,
    )


async def the_webhook(services: Services, renewal_id: str) -> tuple[bytes, dict[str, str]]:
    """What the provider posts once the payer has answered, signed now."""
    async with services.unit_of_work() as uow:
        _, payment, _ = (await uow.renewals.with_payments([renewal_id]))[renewal_id]
    wallet = services.gateways["sandbox_wallet"]
    assert isinstance(wallet, SandboxWallet)
    charge = ChargeRequest(
        payment_id=payment.id,
        token=services.tokens.open(payment.token_encrypted),
        amount=payment.amount,
        description="",
        requested_at=payment.requested_at,
    )
    return wallet.webhook(charge, sent_at=services.clock.now())


async def count(services: Services, table: t.Table, *conditions: object) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        query = select(func.count()).select_from(table).where(*conditions)  # type: ignore[arg-type]
        return int((await connection.execute(query)).scalar_one())


async def drain(services: Services) -> None:
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(services) == 0:
            return
    raise AssertionError("the worker still had work")


async def assert_paid_once(services: Services, renewal_id: str) -> None:
    assert await count(services, t.ledger_entries, t.ledger_entries.c.kind == "capture") == 1
    assert await count(services, t.jobs, t.jobs.c.kind == "activate") == 1
    await drain(services)
    assert (await get_renewal(services, renewal_id)).status == "completed"
    assert await count(services, t.ledger_entries, t.ledger_entries.c.kind == "activation") == 1


async def test_the_payer_is_sent_to_the_wallet_and_the_webhook_completes_the_renewal(
    make_app: AppFactory,
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order("wallet-1"))
    assert waiting.status == "requires_action"
    assert renewal_json(waiting)["next_action"]["type"] == "approve_in_wallet"
    # The sandbox wallet's approval page, on this site (TOPUP_PUBLIC_URL)
    assert renewal_json(waiting)["next_action"]["url"].startswith(
        application.settings.public_url + "/sandbox/wallet/"
    )
    clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(services, waiting.id)
    assert await handle_webhook(services, "sandbox_wallet", body, headers) == "recorded"
    await assert_paid_once(services, waiting.id)


@pytest.mark.parametrize("first", ["webhook", "return", "both at once"])
async def test_a_webhook_and_the_payers_return_in_any_order_pay_once(
    make_app: AppFactory, first: str
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order(f"race-{first}"))
    clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(services, waiting.id)
    webhook = handle_webhook(services, "sandbox_wallet", body, headers)
    comeback = payer_returned(services, waiting.id)
    if first == "webhook":
        await webhook
        await comeback
    elif first == "return":
        await comeback
        await webhook
    else:
        await asyncio.gather(webhook, comeback)
    await assert_paid_once(services, waiting.id)


async def test_twenty_copies_of_one_webhook_at_once_are_applied_once(
    make_app: AppFactory,
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order("duplicates"))
    clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(services, waiting.id)
    answers = await asyncio.gather(
        *(handle_webhook(services, "sandbox_wallet", body, headers) for _ in range(DUPLICATES))
    )
    assert sorted(answers) == ["duplicate"] * (DUPLICATES - 1) + ["recorded"]
    await assert_paid_once(services, waiting.id)


async def test_a_webhook_after_the_renewal_was_completed_changes_nothing(
    make_app: AppFactory,
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order("late-webhook"))
    clock.advance(APPROVAL_DELAY_S)
    await payer_returned(services, waiting.id)
    await drain(services)
    body, headers = await the_webhook(services, waiting.id)
    assert await handle_webhook(services, "sandbox_wallet", body, headers) == "recorded"
    assert await count(services, t.ledger_entries, t.ledger_entries.c.kind == "capture") == 1
    assert (await get_renewal(services, waiting.id)).status == "completed"


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("replayed after five minutes", "webhook_too_old"),
        ("body changed", "webhook_signature_invalid"),
        ("unsigned", "webhook_signature_missing"),
    ],
)
async def test_a_stale_or_forged_webhook_is_refused_and_changes_nothing(
    make_app: AppFactory, tamper: str, code: str
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order(f"forged-{code}"))
    clock.advance(APPROVAL_DELAY_S)
    body, headers = await the_webhook(services, waiting.id)
    if tamper == "replayed after five minutes":
        clock.advance(301)
    elif tamper == "body changed":
        body = body.replace(b"payment.succeeded", b"payment.failed")
    else:
        headers = {}
    with pytest.raises(TopupError) as caught:
        await handle_webhook(services, "sandbox_wallet", body, headers)
    assert caught.value.code == code
    assert (await get_renewal(services, waiting.id)).status == "requires_action"
    assert await count(services, t.webhook_events) == 0


async def test_a_wallet_accounts_daily_limit_says_how_much_is_left_today(
    make_app: AppFactory, tmp_path: Path
) -> None:
    methods = tmp_path / "methods.toml"
    text = MALAYSIAN_METHODS.read_text(encoding="utf-8")
    methods.write_text(text.replace("daily_max_minor = 500000", "daily_max_minor = 2500"))
    application, _ = await wallet_app(make_app, methods_file=str(methods))
    services = application.services
    await renew(services, order("limit-1"))  # 10.00
    await renew(services, order("limit-2"))  # 20.00 today
    with pytest.raises(TopupError) as caught:
        await renew(services, order("limit-3"))
    assert caught.value.code == "ewallet_daily_limit_reached"
    assert caught.value.params["left"] == "5.00 MYR"
    other_account = await renew(services, order("limit-other", account="60123456782"))
    assert other_account.status == "requires_action"


async def test_a_payer_who_approves_after_the_renewal_was_cancelled_is_flagged_for_staff(
    make_app: AppFactory,
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order("too-late", account="60123459999"))  # never answers
    clock.advance(services.limits.payments.requires_action_timeout_s + 2)
    await drain(services)  # the reconciler asks, then gives up: cancelled
    assert (await get_renewal(services, waiting.id)).status == "cancelled"
    body, headers = await the_webhook(services, waiting.id)
    body = body.replace(b'"type":"payment.failed"', b'"type":"payment.succeeded"')
    headers = services.gateways["sandbox_wallet"].sign(body, clock.now())  # type: ignore[attr-defined]
    assert await handle_webhook(services, "sandbox_wallet", body, headers) == "recorded"
    late = await get_renewal(services, waiting.id)
    assert late.status == "cancelled"
    assert late.payment is not None and late.payment.status == "late_success"
    assert late.payment.flagged_for_staff


async def test_a_webhook_that_says_nothing_final_is_noted_and_changes_nothing(
    make_app: AppFactory,
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order("pending-event"))
    body, _ = await the_webhook(services, waiting.id)
    body = body.replace(b"payment.succeeded", b"payment.created")
    headers = services.gateways["sandbox_wallet"].sign(body, clock.now())  # type: ignore[attr-defined]
    assert await handle_webhook(services, "sandbox_wallet", body, headers) == "recorded"
    assert (await get_renewal(services, waiting.id)).status == "requires_action"


async def test_a_signature_with_characters_outside_ascii_is_refused_cleanly(
    make_app: AppFactory,
) -> None:
    application, clock = await wallet_app(make_app)
    services = application.services
    waiting = await renew(services, order("non-ascii"))
    body, _ = await the_webhook(services, waiting.id)
    headers = {"Sandbox-Signature": f"t={int(clock.now().timestamp())},v1=é"}
    with pytest.raises(TopupError) as caught:
        await handle_webhook(services, "sandbox_wallet", body, headers)
    assert caught.value.code == "webhook_signature_invalid"


async def test_three_spellings_of_one_wallet_account_share_one_daily_allowance(
    make_app: AppFactory, tmp_path: Path
) -> None:
    methods = tmp_path / "methods.toml"
    text = MALAYSIAN_METHODS.read_text(encoding="utf-8")
    methods.write_text(text.replace("daily_max_minor = 500000", "daily_max_minor = 2500"))
    application, _ = await wallet_app(make_app, methods_file=str(methods))
    services = application.services
    await renew(services, order("spelling-1", account="0123456781"))  # 10.00
    await renew(services, order("spelling-2", account="60123456781"))  # 20.00 today
    with pytest.raises(TopupError) as caught:
        await renew(services, order("spelling-3", account="0060123456781"))
    assert caught.value.code == "ewallet_daily_limit_reached"
    assert caught.value.params["left"] == "5.00 MYR"
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        rows = (await connection.execute(select(t.payments.c.wallet_account_fingerprint))).all()
    assert len({row[0] for row in rows}) == 1  # one account, stored once however it was typed


@pytest.mark.parametrize("account", ["0312345678", "12345", "+6591234567", "8960123456789012345"])
async def test_a_wallet_account_that_is_not_a_mobile_number_of_the_region_is_refused(
    make_app: AppFactory, account: str
) -> None:
    application, _ = await wallet_app(make_app)
    with pytest.raises(TopupError) as caught:
        await renew(application.services, order(f"invalid-{account}", account=account))
    assert caught.value.code == "wallet_account_invalid"
    assert caught.value.field == "payment.wallet_account"
    assert await count(application.services, t.renewals) == 0
