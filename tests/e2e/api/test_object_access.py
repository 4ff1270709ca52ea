"""Object-level authorisation over HTTP (BOLA): another account's card, renewal and receipt are
answered 404, exactly as ones that do not exist; their owner sees them; history pages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import AppFactory
from tests.e2e.api.conftest import client_for
from tests.e2e.api.test_accounts import CARD, Demo, _demo
from tests.e2e.api.test_renewals_api import token_for
from topup.services.api_keys import create_api_key
from topup.settings import LimitSettings

UNKNOWN_CARD = "+60123459999"


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[Demo]:
    async with _demo(
        make_app, LimitSettings(login_slowdown_s=0, login_per_minute_max=1000)
    ) as found:
        yield found


async def renew_as(site: Demo, headers: dict[str, str]) -> dict[str, Any]:
    token = await token_for(site.api)
    response = await site.api.post(
        "/api/v1/renewals",
        json={
            "card_number": CARD,
            "plan": "pack_5gb_7d",
            "payment": {"method": "credit_card", "token": token},
        },
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_another_account_gets_404_for_a_card_renewal_and_receipt_it_does_not_own(
    site: Demo,
) -> None:
    owner = await site.bearer("owner@example.com")
    await site.link(owner)
    renewal = await renew_as(site, owner)
    stranger = await site.bearer("stranger@example.com")
    api = site.api

    for path in ("balance", "transactions"):
        mine = await api.get(f"/api/v1/cards/{CARD}/{path}", headers=owner)
        assert mine.status_code == 200, mine.text
        theirs = await api.get(f"/api/v1/cards/{CARD}/{path}", headers=stranger)
        nobody = await api.get(f"/api/v1/cards/{UNKNOWN_CARD}/{path}", headers=stranger)
        anonymous = await api.get(f"/api/v1/cards/{CARD}/{path}")
        assert theirs.status_code == nobody.status_code == anonymous.status_code == 404
        assert theirs.json() == nobody.json() == anonymous.json()

    mine = await api.get(f"/api/v1/renewals/{renewal['id']}", headers=owner)
    assert mine.status_code == 200
    theirs = await api.get(f"/api/v1/renewals/{renewal['id']}", headers=stranger)
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "renewal_unknown"

    receipt = renewal["receipt_number"]
    assert (await api.get(f"/api/v1/receipts/{receipt}", headers=owner)).status_code == 200
    theirs = await api.get(f"/api/v1/receipts/{receipt}", headers=stranger)
    nobody = await api.get("/api/v1/receipts/R-0000-0000-0000", headers=stranger)
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == nobody.json()


async def test_transactions_come_newest_first_a_page_at_a_time(site: Demo) -> None:
    owner = await site.bearer("pages@example.com")
    await site.link(owner)
    made = [(await renew_as(site, owner))["id"] for _ in range(3)]
    api = site.api
    first = await api.get(f"/api/v1/cards/{CARD}/transactions?limit=2", headers=owner)
    assert first.status_code == 200
    page = first.json()
    assert len(page["transactions"]) == 2
    assert page["next_cursor"]
    second = await api.get(
        f"/api/v1/cards/{CARD}/transactions",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=owner,
    )
    rest = second.json()
    assert rest["next_cursor"] is None
    seen = [item["renewal_id"] for item in page["transactions"] + rest["transactions"]]
    assert sorted(seen) == sorted(made)
    assert len(set(seen)) == 3
    created = [item["created_at"] for item in page["transactions"] + rest["transactions"]]
    assert created == sorted(created, reverse=True)
    forged = await api.get(
        f"/api/v1/cards/{CARD}/transactions", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=owner
    )
    assert forged.status_code == 422
    assert forged.json()["code"] == "cursor_invalid"
    too_many = await api.get(f"/api/v1/cards/{CARD}/transactions?limit=1000", headers=owner)
    assert too_many.status_code == 422


async def test_card_lookups_are_rate_limited_with_a_retry_after(make_app: AppFactory) -> None:
    from topup.services.demo import load_demo

    application = make_app(limits=LimitSettings(card_lookup_per_minute_max=3))
    await load_demo(application.services)
    async with client_for(application) as api:
        answers = [await api.get(f"/api/v1/cards/{CARD}/plans") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    plans = answers[0].json()
    assert set(plans["card"]) == {"kind", "status", "validity_end", "grace_end", "currency"}
    assert plans["plans"]


async def test_a_store_key_sells_but_cannot_read_every_subscribers_card(site: Demo) -> None:
    services = site.application.services
    _, store_key = await create_api_key(
        services, name="Store 1", role="store", outlet="s1", region="johor"
    )
    _, staff_key = await create_api_key(
        services, name="Customer service", role="staff", outlet=None, region=None
    )
    api = site.api
    store = await api.get(f"/api/v1/cards/{CARD}/balance", headers={"X-API-Key": store_key})
    assert store.status_code == 404
    staff = await api.get(f"/api/v1/cards/{CARD}/balance", headers={"X-API-Key": staff_key})
    assert staff.status_code == 200
    token = await token_for(api)
    sold = await api.post(
        "/api/v1/renewals",
        json={
            "card_number": CARD,
            "plan": "pack_5gb_7d",
            "payment": {"method": "credit_card", "token": token},
        },
        headers={"X-API-Key": store_key, "Idempotency-Key": "store-sale"},
    )
    assert sold.status_code == 201, sold.text
    assert sold.json()["channel"] == "store"


async def test_not_yours_and_does_not_exist_are_the_same_answer_for_a_renewal(
    site: Demo,
) -> None:
    owner = await site.bearer("mine@example.com")
    await site.link(owner)
    renewal = await renew_as(site, owner)
    stranger = await site.bearer("other@example.com")
    unknown = str(uuid.uuid4())
    theirs = await site.api.get(f"/api/v1/renewals/{renewal['id']}", headers=stranger)
    nobody = await site.api.get(f"/api/v1/renewals/{unknown}", headers=stranger)
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.text.replace(renewal["id"], "ID") == nobody.text.replace(unknown, "ID")
    assert dict(theirs.headers) == dict(nobody.headers) | {
        "content-length": theirs.headers["content-length"]
    }


async def test_a_stranger_cannot_use_up_a_renewals_confirmation_attempts(site: Demo) -> None:
    token = await token_for(site.api, "4000000000003220")
    created = await site.api.post(
        "/api/v1/renewals",
        json={
            "card_number": CARD,
            "plan": "pack_5gb_7d",
            "payment": {"method": "credit_card", "token": token},
        },
        headers={"Idempotency-Key": "needs-password"},
    )
    body = created.json()
    url = f"/api/v1/renewals/{body['id']}/confirm"
    limit = site.application.services.limits.rates.confirm_per_minute_max
    async with client_for(site.application, "198.51.100.9") as elsewhere:
        answers = [
            (await elsewhere.post(url, json={"answer": "0000"})).status_code
            for _ in range(limit + 2)
        ]
    assert set(answers) <= {404, 429}
    from topup.adapters.gateways.sandbox import AUTHENTICATION_ANSWER

    owner = await site.api.post(
        url,
        json={"answer": AUTHENTICATION_ANSWER},
        headers={"X-Client-Secret": body["client_secret"]},
    )
    assert owner.status_code != 429
