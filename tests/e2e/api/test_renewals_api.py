"""POST /api/v1/renewals and its idempotency, GET and confirm, over HTTP on both databases."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import START, AppFactory
from tests.e2e.api.conftest import client_for
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.domain.errors import InputError
from topup.entrypoints.worker import work_once
from topup.services import idempotency
from topup.services.demo import load_demo

CARD = "0123456789"
PLAN = "pack_5gb_7d"


async def token_for(api: httpx.AsyncClient, number: str = "4242424242424242") -> str:
    response = await api.post(
        "/sandbox/psp/v1/tokens",
        json={"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def order(token: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "card_number": CARD,
        "plan": PLAN,
        "payment": {"method": "credit_card", "token": token},
    }
    body.update(changes)
    return body


async def test_a_renewal_is_created_and_paid_and_its_client_secret_reads_it(
    api: httpx.AsyncClient,
) -> None:
    token = await token_for(api)
    response = await api.post(
        "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] in {"paid", "activating"}
    assert created["receipt_number"].startswith("R-")
    assert "idempotency_key" not in created
    secret = created["client_secret"]
    read = await api.get(f"/api/v1/renewals/{created['id']}", headers={"X-Client-Secret": secret})
    assert read.status_code == 200
    assert read.json()["id"] == created["id"]
    assert "client_secret" not in read.json()
    for headers in ({}, {"X-Client-Secret": secret[:-1] + "x"}):
        hidden = await api.get(f"/api/v1/renewals/{created['id']}", headers=headers)
        assert hidden.status_code == 404
        assert hidden.json()["code"] == "renewal_unknown"


async def test_the_same_key_and_body_replay_the_first_response_byte_for_byte(
    api: httpx.AsyncClient,
) -> None:
    token = await token_for(api)
    headers = {"Idempotency-Key": "replay-1"}
    first = await api.post("/api/v1/renewals", json=order(token), headers=headers)
    second = await api.post("/api/v1/renewals", json=order(token), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    history_headers = {"X-Client-Secret": first.json()["client_secret"]}
    read = await api.get(f"/api/v1/renewals/{first.json()['id']}", headers=history_headers)
    assert read.status_code == 200


async def test_the_same_key_with_another_body_is_refused(api: httpx.AsyncClient) -> None:
    token = await token_for(api)
    headers = {"Idempotency-Key": "reuse-1"}
    assert (
        await api.post("/api/v1/renewals", json=order(token), headers=headers)
    ).status_code == 201
    other = await api.post(
        "/api/v1/renewals", json=order(token, plan="pack_30gb_30d"), headers=headers
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"


async def test_a_request_without_a_key_is_refused_and_stores_nothing(
    api: httpx.AsyncClient,
) -> None:
    token = await token_for(api)
    missing = await api.post("/api/v1/renewals", json=order(token))
    assert missing.status_code == 400
    assert missing.json()["code"] == "idempotency_key_required"
    invalid = await api.post(
        "/api/v1/renewals", json={"card_number": CARD}, headers={"Idempotency-Key": "v-1"}
    )
    assert invalid.status_code == 422
    # Rejected by validation: the key is still free for the corrected request.
    fixed = await api.post(
        "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "v-1"}
    )
    assert fixed.status_code == 201


async def test_errors_of_execution_are_stored_and_replayed(api: httpx.AsyncClient) -> None:
    token = await token_for(api)
    headers = {"Idempotency-Key": "too-late"}
    lapsed = order(token, card_number="0123450002")  # demo: expired 45 days ago, past grace
    first = await api.post("/api/v1/renewals", json=lapsed, headers=headers)
    assert first.status_code == 409, first.text
    again = await api.post("/api/v1/renewals", json=lapsed, headers=headers)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_second_request_while_the_first_runs_is_told_the_key_is_in_use(
    make_app: AppFactory,
) -> None:
    application = make_app(gateway_latency_s=0.5)
    await load_demo(application.services)
    async with client_for(application) as api:
        token = await token_for(api)
        headers = {"Idempotency-Key": "in-flight"}
        first = asyncio.create_task(
            api.post("/api/v1/renewals", json=order(token), headers=headers)
        )
        await asyncio.sleep(0.2)
        second = await api.post("/api/v1/renewals", json=order(token), headers=headers)
        assert second.status_code == 409
        assert second.json()["code"] == "idempotency_key_in_use"
        assert (await first).status_code == 201


async def test_a_key_is_forgotten_after_24_hours(make_app: AppFactory) -> None:
    clock = FixedClock(START)
    application = make_app(clock=clock)
    await load_demo(application.services)
    async with client_for(application) as api:
        token = await token_for(api)
        headers = {"Idempotency-Key": "day-old"}
        first = await api.post("/api/v1/renewals", json=order(token), headers=headers)
        assert first.status_code == 201
        clock.advance(23 * 3600)
        replay = await api.post("/api/v1/renewals", json=order(token), headers=headers)
        assert replay.content == first.content
        clock.advance(3600 + 1)
        fresh = await api.post("/api/v1/renewals", json=order(token), headers=headers)
        assert fresh.status_code == 201
        assert fresh.json()["id"] != first.json()["id"]


async def test_a_declined_card_is_a_402_problem_with_the_renewal(api: httpx.AsyncClient) -> None:
    token = await token_for(api, "4000000000000002")
    response = await api.post(
        "/api/v1/renewals",
        json=order(token),
        headers={"Idempotency-Key": "declined", "Accept-Language": "ms"},
    )
    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "card_declined"
    assert body["renewal"]["status"] == "declined"
    assert body["title"] == "Pembayaran tidak dibuat"


async def test_bad_input_gets_a_precise_code_per_field(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "bad-input", "Content-Type": "application/json"}
    malformed = await api.post("/api/v1/renewals", content=b'{"card_number": ', headers=headers)
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "json_invalid"
    token = await token_for(api)
    wrong_type = await api.post(
        "/api/v1/renewals", json=order(token, plan=5), headers={"Idempotency-Key": "b-2"}
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["field"] == "plan"
    unknown = await api.post(
        "/api/v1/renewals", json=order(token, promo="x"), headers={"Idempotency-Key": "b-3"}
    )
    assert unknown.json()["errors"][0] == {
        "field": "promo",
        "code": "field_unknown",
        "message": "promo is not a field of this request.",
    }
    bad_number = await api.post(
        "/api/v1/renewals",
        json=order(token, card_number="12"),
        headers={"Idempotency-Key": "b-4", "Accept-Language": "id"},
    )
    assert bad_number.status_code == 422
    assert bad_number.json()["errors"][0]["field"] == "card_number"


async def test_a_caller_without_a_key_cannot_claim_the_kiosk_channel(
    api: httpx.AsyncClient,
) -> None:
    token = await token_for(api)
    response = await api.post(
        "/api/v1/renewals", json=order(token, channel="kiosk"), headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "channel_not_allowed"


async def test_a_payment_password_is_confirmed_through_the_api(api: httpx.AsyncClient) -> None:
    token = await token_for(api, "4000000000003220")
    created = await api.post(
        "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "3ds"}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["next_action"] == {"type": "payment_password"}
    url = f"/api/v1/renewals/{body['id']}/confirm"
    refused = await api.post(url, json={"answer": "x"})
    assert refused.status_code == 404
    from topup.adapters.gateways.sandbox import AUTHENTICATION_ANSWER

    confirmed = await api.post(
        url,
        json={"answer": AUTHENTICATION_ANSWER},
        headers={"X-Client-Secret": body["client_secret"]},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] in {"paid", "activating"}


async def test_a_card_declined_after_authentication_is_declined_once_the_api_confirms_it(
    api: httpx.AsyncClient,
) -> None:
    token = await token_for(api, "4000008400001629")
    created = await api.post(
        "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "3ds-declined"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "requires_action"
    assert body["next_action"] == {"type": "payment_password"}

    declined = await api.post(
        f"/api/v1/renewals/{body['id']}/confirm",
        json={"answer": "123456"},
        headers={"X-Client-Secret": body["client_secret"]},
    )

    assert declined.status_code == 402, declined.text
    assert declined.json()["code"] == "card_declined"


async def test_the_worker_forgets_idempotency_records_after_24_hours(make_app: AppFactory) -> None:
    clock = FixedClock(START)
    application = make_app(clock=clock)
    await load_demo(application.services)
    async with client_for(application) as api:
        token = await token_for(api)
        await api.post("/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "old"})
    services = application.services
    assert await idempotency.prune(services, limit=10) == 0
    clock.advance(24 * 3600 + 1)
    assert await idempotency.prune(services, limit=10) == 1


async def test_the_receipt_is_emailed_in_the_callers_language_once_paid(
    make_app: AppFactory,
) -> None:
    application = make_app()
    await load_demo(application.services)
    mailer = application.services.mailer
    assert isinstance(mailer, MemoryMailer)
    async with client_for(application) as api:
        token = await token_for(api)
        created = await api.post(
            "/api/v1/renewals",
            json=order(token, email="aisyah@example.com"),
            headers={"Idempotency-Key": "with-receipt", "Accept-Language": "ms"},
        )
    assert created.status_code == 201
    await work_once(application.services)
    # (The worker also reminds the demo card in grace, weiming@: only aisyah's mail is looked at.)
    [receipt] = mailer.to("aisyah@example.com")
    assert created.json()["receipt_number"] in receipt.body
    await work_once(application.services)
    assert len(mailer.to("aisyah@example.com")) == 1  # sent once


async def test_a_request_refused_for_its_input_leaves_the_key_free(api: httpx.AsyncClient) -> None:
    token = await token_for(api)
    headers = {"Idempotency-Key": "typo"}
    typo = await api.post(
        "/api/v1/renewals", json=order(token, card_number="01234x"), headers=headers
    )
    assert typo.status_code == 422
    unknown = await api.post(
        "/api/v1/renewals", json=order(token, plan="no_such_plan"), headers=headers
    )
    assert unknown.status_code == 404
    fixed = await api.post("/api/v1/renewals", json=order(token), headers=headers)
    assert fixed.status_code == 201, fixed.text


async def test_a_stored_response_keeps_the_client_secret_sealed(make_app: AppFactory) -> None:
    application = make_app()
    await load_demo(application.services)
    async with client_for(application) as api:
        token = await token_for(api)
        first = await api.post(
            "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "s"}
        )
        again = await api.post(
            "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "s"}
        )
    assert again.content == first.content
    secret = first.json()["client_secret"].encode()
    async with application.services.unit_of_work() as uow:
        rows = await uow.connection.execute(select(tables.idempotency_requests.c.body))  # type: ignore[attr-defined]
        bodies = [bytes(row[0]) for row in rows]
    assert bodies
    assert not any(secret in body or b"client_secret" in body for body in bodies)


async def test_a_cursor_outside_any_time_we_keep_is_refused(api: httpx.AsyncClient) -> None:
    import base64
    import json

    from topup.domain.callers import ApiKeyRole, Caller, CallerKind
    from topup.services.queries import card_transactions

    services = api._transport.app.state.application.services  # type: ignore[attr-defined]
    staff = Caller(CallerKind.API_KEY, api_key_id="k", role=ApiKeyRole.STAFF)
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "not a time"):
        cursor = base64.urlsafe_b64encode(json.dumps([moment, "x"]).encode()).decode()
        try:
            await card_transactions(services, staff, CARD, limit=5, cursor=cursor)
        except InputError as error:
            assert error.code == "cursor_invalid"
        else:
            raise AssertionError(f"cursor {moment} was taken")


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("4000000000009987", "lost_card"),
        ("4000000000009979", "stolen_card"),
        ("4000000000006975", "card_velocity_exceeded"),
        ("4100000000000019", "fraudulent"),
    ],
)
async def test_each_of_stripes_decline_cards_is_a_402_problem_with_its_own_code(
    api: httpx.AsyncClient, number: str, code: str
) -> None:
    token = await token_for(api, number)
    response = await api.post(
        "/api/v1/renewals",
        json=order(token),
        headers={"Idempotency-Key": f"declined-{number}", "Accept-Language": "zh-Hans"},
    )
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["code"] == code
    assert body["renewal"]["status"] == "declined"
    assert "被盗" not in body["detail"] and "挂失" not in body["detail"]  # a plain decline


@pytest.mark.parametrize("length", [idempotency.KEY_LENGTH_MAX + 1, 1001, 3999, 4000, 9000])
async def test_every_idempotency_key_that_is_too_long_is_idempotency_key_invalid(
    api: httpx.AsyncClient, length: int
) -> None:
    token = await token_for(api)
    response = await api.post(
        "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": "k" * length}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "idempotency_key_invalid"
