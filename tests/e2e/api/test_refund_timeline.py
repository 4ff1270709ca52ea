"""A staff refund as the API shows it: the renewal's timeline says staff refunded it and why."""

from __future__ import annotations

import uuid

import httpx

from tests.e2e.api.test_renewals_api import order, token_for
from topup.bootstrap import Application
from topup.entrypoints.worker import work_once
from topup.services.activation import request_refund

STAFF_REASON = "customer asked at the store"


async def test_the_api_timeline_of_a_staff_refund_says_staff_refunded_it_and_why(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    token = await token_for(api)
    created = await api.post(
        "/api/v1/renewals", json=order(token), headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert created.status_code == 201, created.text
    renewal = created.json()
    assert await request_refund(demo_app.services, renewal["id"], reason=STAFF_REASON) == "queued"
    await work_once(demo_app.services)
    read = await api.get(
        f"/api/v1/renewals/{renewal['id']}", headers={"X-Client-Secret": renewal["client_secret"]}
    )
    assert read.status_code == 200, read.text
    step = read.json()["timeline"][-1]
    assert (step["from"], step["to"]) == ("activating", "refunded")
    assert step["reason"] == f"refunded at staff request before activation: {STAFF_REASON}"
