"""One card-look-up limit (issue 9, A5): every route that resolves a card number counts against
``card_lookup_per_minute_max`` (60 a minute), per client and per canonical card number, so that
no route answers unlimited "is this number a customer?" questions (``card_unknown`` against
``plan_unknown`` or ``link_code_expired``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tests.conftest import AppFactory
from tests.e2e.api.conftest import client_for
from tests.e2e.api.test_accounts import Demo, _demo
from topup.settings import LimitSettings

TRIES = 80
LOOKUPS_PER_MINUTE_MAX = 60  # the default
KNOWN_CARD_SPELLINGS = ("0123456789", "+60123456789", "60123456789", "012-345 6789")

Try = Callable[[httpx.AsyncClient, dict[str, str], str], Awaitable[httpx.Response]]


def unknown_number(index: int) -> str:
    return f"+6012345{9000 + index}"


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[Demo]:
    limits = LimitSettings(
        login_slowdown_s=0, login_per_minute_max=1000, sms_codes_per_hour_max=1000
    )
    async with _demo(make_app, limits) as found:
        yield found


async def renewal_with_an_unknown_plan(
    api: httpx.AsyncClient, headers: dict[str, str], card: str
) -> httpx.Response:
    return await api.post(
        "/api/v1/renewals",
        json={"card_number": card, "plan": "no_such_plan", "payment": {"method": "credit_card"}},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )


async def link_code_check(
    api: httpx.AsyncClient, headers: dict[str, str], card: str
) -> httpx.Response:
    return await api.post(
        "/api/v1/accounts/me/cards/verify",
        json={"card_number": card, "code": "000000"},
        headers=headers,
    )


async def link_code_request(
    api: httpx.AsyncClient, headers: dict[str, str], card: str
) -> httpx.Response:
    return await api.post("/api/v1/accounts/me/cards", json={"card_number": card}, headers=headers)


async def plans(api: httpx.AsyncClient, headers: dict[str, str], card: str) -> httpx.Response:
    return await api.get(f"/api/v1/cards/{card}/plans", headers=headers)


async def payment_methods(
    api: httpx.AsyncClient, headers: dict[str, str], card: str
) -> httpx.Response:
    return await api.get(
        "/api/v1/payment-methods", params={"card_number": card, "plan": "x"}, headers=headers
    )


async def balance(api: httpx.AsyncClient, headers: dict[str, str], card: str) -> httpx.Response:
    return await api.get(f"/api/v1/cards/{card}/balance", headers=headers)


def assert_limited_after_the_allowance(answers: list[httpx.Response]) -> None:
    statuses = [answer.status_code for answer in answers]
    assert 429 not in statuses[:LOOKUPS_PER_MINUTE_MAX], statuses
    assert statuses[LOOKUPS_PER_MINUTE_MAX:] == [429] * (len(answers) - LOOKUPS_PER_MINUTE_MAX)
    for refused in answers[LOOKUPS_PER_MINUTE_MAX:]:
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "attempt",
    [
        renewal_with_an_unknown_plan,
        link_code_check,
        link_code_request,
        plans,
        payment_methods,
        balance,
    ],
)
async def test_eighty_look_ups_of_unknown_numbers_from_one_client_get_429s(
    site: Demo, attempt: Try
) -> None:
    headers = await site.bearer("prober@example.com")
    answers = [await attempt(site.api, headers, unknown_number(index)) for index in range(TRIES)]
    assert_limited_after_the_allowance(answers)


async def test_a_number_in_any_spelling_from_many_clients_is_counted_once(site: Demo) -> None:
    answers = []
    for index in range(TRIES):
        async with client_for(site.application, f"198.51.100.{index + 1}") as api:
            card = KNOWN_CARD_SPELLINGS[index % len(KNOWN_CARD_SPELLINGS)]
            answers.append(await renewal_with_an_unknown_plan(api, {}, card))
    codes = {answer.json()["code"] for answer in answers[:LOOKUPS_PER_MINUTE_MAX]}
    assert "card_unknown" not in codes  # every spelling found the one card
    assert_limited_after_the_allowance(answers)


async def test_the_routes_that_resolve_a_card_number_share_one_count(site: Demo) -> None:
    headers = await site.bearer("prober@example.com")
    routes: list[Try] = [plans, payment_methods, renewal_with_an_unknown_plan, link_code_check]
    answers = [
        await routes[index % len(routes)](site.api, headers, unknown_number(index))
        for index in range(TRIES)
    ]
    assert_limited_after_the_allowance(answers)
