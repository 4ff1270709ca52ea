"""Gateways' webhooks over HTTP: a signed event pays the renewal once; repeats, forgeries and
unknown gateways change nothing."""

from __future__ import annotations

import asyncio

import httpx
import uvicorn

from tests.conftest import AppFactory
from tests.e2e.api.conftest import client_for
from tests.integration.test_ewallet import ACCOUNT, order, the_webhook, wallet_app
from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.entrypoints.api.app import create_app
from topup.services.demo import load_demo
from topup.services.renewals import get_renewal, renew

WEBHOOK = "/api/v1/webhooks/sandbox_wallet"


async def wallet_renewal(api: httpx.AsyncClient) -> dict[str, object]:
    response = await api.post(
        "/api/v1/renewals",
        json={
            "card_number": "+60123456789",
            "plan": "pack_5gb_7d",
            "payment": {"method": "ewallet:tng", "wallet_account": ACCOUNT},
        },
        headers={"Idempotency-Key": "wallet-1"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    assert body["status"] == "requires_action"
    assert body["next_action"] == {"type": "approve_in_wallet", "url": body["next_action"]["url"]}  # type: ignore[index]
    return body


async def test_a_signed_webhook_pays_the_renewal_once_and_a_repeat_is_a_duplicate(
    make_app: AppFactory,
) -> None:
    application, _ = await wallet_app(make_app)
    async with client_for(application) as api:
        renewal = await wallet_renewal(api)
        body, headers = await the_webhook(application.services, str(renewal["id"]))
        first = await api.post(WEBHOOK, content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json() == {"outcome": "recorded"}
        again = await api.post(WEBHOOK, content=body, headers=headers)
        assert again.json() == {"outcome": "duplicate"}
    view = await get_renewal(application.services, str(renewal["id"]))
    assert view.status in {"paid", "activating"}


async def test_a_forged_or_unsigned_webhook_is_refused_with_its_code(make_app: AppFactory) -> None:
    application, _ = await wallet_app(make_app)
    async with client_for(application) as api:
        renewal = await wallet_renewal(api)
        body, headers = await the_webhook(application.services, str(renewal["id"]))
        forged = await api.post(
            WEBHOOK, content=body.replace(b"succeeded", b"failed"), headers=headers
        )
        assert forged.status_code == 400
        assert forged.json()["code"] == "webhook_signature_invalid"
        unsigned = await api.post(WEBHOOK, content=body)
        assert unsigned.json()["code"] == "webhook_signature_missing"
        unknown = await api.post("/api/v1/webhooks/nobody", content=body, headers=headers)
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "gateway_unknown"
    view = await get_renewal(application.services, str(renewal["id"]))
    assert view.status == "requires_action"


async def test_the_sandbox_wallet_posts_its_webhook_over_http_to_the_server(
    make_app: AppFactory, unused_tcp_port: int
) -> None:
    base = f"http://127.0.0.1:{unused_tcp_port}"
    application = make_app(sandbox_webhook_url=base, wallet_approval_delay_s=0.05)
    await load_demo(application.services)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(application), host="127.0.0.1", port=unused_tcp_port, log_level="warning"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.05)
        view = await renew(application.services, order("over-http"))
        assert view.status == "requires_action"
        for _ in range(100):
            view = await get_renewal(application.services, view.id)
            if view.status != "requires_action":
                break
            await asyncio.sleep(0.05)
        assert view.status in {"paid", "activating"}
    finally:
        server.should_exit = True
        await serving


async def test_a_correctly_signed_webhook_with_an_odd_timestamp_is_a_400_with_the_webhook_code(
    make_app: AppFactory,
) -> None:
    application, _ = await wallet_app(make_app)
    wallet = application.services.gateways["sandbox_wallet"]
    assert isinstance(wallet, SandboxWallet)
    async with client_for(application) as api:
        renewal = await wallet_renewal(api)
        body, _ = await the_webhook(application.services, str(renewal["id"]))
        for timestamp in ["²", "1" * 5000, "١٧٦٤٠٥٧٦٠٠"]:
            headers = wallet.sign_with_timestamp(body, timestamp)
            # httpx sends header values as ASCII or Latin-1 bytes: non-ASCII goes as UTF-8 bytes.
            raw = {key: value.encode() for key, value in headers.items()}
            answer = await api.post(WEBHOOK, content=body, headers=raw)
            assert answer.status_code == 400, (timestamp[:12], answer.text)
            assert answer.json()["code"] in {
                "webhook_timestamp_invalid",
                "webhook_signature_invalid",
            }
    view = await get_renewal(application.services, str(renewal["id"]))
    assert view.status == "requires_action"
