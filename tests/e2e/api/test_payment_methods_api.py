"""Payment methods over HTTP: a method that is off, unknown or not taken here is answered as such
before its details are asked for, and a store key is offered only what it can be paid with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from topup.bootstrap import Application
from topup.services.api_keys import create_api_key

CARD = "0123456789"  # the demo's active prepaid card
PLAN = "pack_5gb_7d"


async def store_key(application: Application) -> str:
    _, key = await create_api_key(
        application.services, name="Store 1", role="store", outlet="s1", region="penang"
    )
    return key


async def renewal_answer(
    api: httpx.AsyncClient, method: str, key: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"card_number": CARD, "plan": PLAN, "payment": {"method": method}}
    return await api.post(
        "/api/v1/renewals", json=body, headers={"Idempotency-Key": key, **(headers or {})}
    )


@pytest.mark.parametrize(
    ("method", "status", "code"),
    [
        ("alipay", 409, "method_disabled"),
        ("wechat_pay", 409, "method_disabled"),
        ("paypal", 404, "method_unknown"),
        ("ewallet:tnG", 404, "method_unknown"),
        ("cash", 409, "method_not_offered_here"),
    ],
)
async def test_a_method_without_card_details_is_judged_before_its_details(
    api: httpx.AsyncClient, method: str, status: int, code: str
) -> None:
    answer = await renewal_answer(api, method, f"judged-{method}")
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code
    assert "credit card" in body["detail"]  # the alternatives are named


async def test_cash_asked_for_with_a_store_key_is_not_supported_and_names_the_alternatives(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    key = await store_key(demo_app)
    answer = await renewal_answer(api, "cash", "store-cash", {"X-API-Key": key})
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "method_not_supported"
    assert "credit card" in answer.json()["detail"]


async def test_a_store_key_is_not_offered_cash_that_it_could_not_pay_with(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    key = await store_key(demo_app)
    answer = await api.get(
        "/api/v1/payment-methods",
        params={"card_number": CARD, "plan": PLAN},
        headers={"X-API-Key": key},
    )
    assert answer.status_code == 200, answer.text
    codes = [method["code"] for method in answer.json()["methods"]]
    assert "cash" not in codes
    assert "credit_card" in codes and "ewallet:tng" in codes
