"""Accounts over HTTP, on SQLite and PostgreSQL: sign-up, sign-in with expiring and revocable
bearer tokens, the slow-down and the per-address lock after repeated failures, linking cards by a
code sent by SMS, and the housekeeping that forgets what is over."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import AppFactory
from tests.e2e.api.conftest import client_for
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables
from topup.adapters.db.tables import metadata
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.bootstrap import Application
from topup.entrypoints.api.app import create_app
from topup.entrypoints.worker import work_once
from topup.services import accounts
from topup.services.demo import load_demo
from topup.settings import LimitSettings

CARD = "+60123456789"  # demo: prepaid, 5.00 MYR credit, 2 GB
OTHER_CARD = "+60198765432"  # demo: postpaid
UNKNOWN_CARD = "+60123459999"  # a mobile number, not a card of ours
PASSWORD = "correct horse battery"
ATTACKER_ADDRESS = "198.51.100.9"  # the tests' own client is 203.0.113.7
LOCK_S = 900
TOKEN_LIFETIME_S = 43_200


@dataclass
class Demo:
    application: Application
    api: httpx.AsyncClient

    @property
    def clock(self) -> FixedClock:
        clock = self.application.services.clock
        assert isinstance(clock, FixedClock)
        return clock

    @property
    def sms(self) -> SandboxSms:
        sms = self.application.services.sms
        assert isinstance(sms, SandboxSms)
        return sms

    async def sign_up(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.api.post(
            "/api/v1/accounts", json={"email": email, "password": password}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.api.post(
            "/api/v1/auth/token", json={"email": email, "password": password}
        )

    async def bearer(self, email: str) -> dict[str, str]:
        """Sign up and in; the header that carries the token."""
        await self.sign_up(email)
        response = await self.log_in(email)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def ask_code(self, headers: dict[str, str], card: str = CARD) -> httpx.Response:
        return await self.api.post(
            "/api/v1/accounts/me/cards", json={"card_number": card}, headers=headers
        )

    def code_sent_to(self, msisdn: str = CARD) -> str:
        message = self.sms.last_to(msisdn)
        assert message is not None
        found = re.search(r"(?<!\d)\d{6}(?!\d)", message.text)
        assert found is not None
        return found.group()

    async def verify(self, headers: dict[str, str], code: str, card: str = CARD) -> httpx.Response:
        return await self.api.post(
            "/api/v1/accounts/me/cards/verify",
            json={"card_number": card, "code": code},
            headers=headers,
        )

    async def link(self, headers: dict[str, str], card: str = CARD) -> None:
        assert (await self.ask_code(headers, card)).status_code == 202
        assert (await self.verify(headers, self.code_sent_to(card), card)).status_code == 201


@asynccontextmanager
async def _from_address(demo: Demo, address: str) -> AsyncIterator[Demo]:
    """The same application, called from another client address."""
    async with client_for(demo.application, address) as client:
        yield Demo(demo.application, client)


@asynccontextmanager
async def _demo(make_app: AppFactory, limits: LimitSettings) -> AsyncIterator[Demo]:
    application = make_app(limits=limits)
    await load_demo(application.services)
    async with client_for(application) as client:
        yield Demo(application, client)


@pytest.fixture
async def demo(make_app: AppFactory) -> AsyncIterator[Demo]:
    """No slow-down and no per-minute limit on sign-ins: these tests are about the lock."""
    async with _demo(
        make_app, LimitSettings(login_slowdown_s=0, login_per_minute_max=1000)
    ) as found:
        yield found


def _wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- sign-up ------------------------------------------------------------------------------------


async def test_sign_up_opens_an_account_under_the_lower_case_email(demo: Demo) -> None:
    response = await demo.api.post(
        "/api/v1/accounts",
        json={"email": "  Aisyah@Example.COM ", "password": PASSWORD, "language": "ms"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "email": "aisyah@example.com", "language": "ms"}


async def test_sign_up_takes_the_language_of_the_request_when_none_is_given(demo: Demo) -> None:
    response = await demo.api.post(
        "/api/v1/accounts",
        json={"email": "mei@example.com", "password": PASSWORD},
        headers={"Accept-Language": "zh-CN"},
    )
    assert response.json()["language"] == "zh_Hans"


async def test_a_second_sign_up_with_the_same_email_in_other_letters_is_refused(
    demo: Demo,
) -> None:
    await demo.sign_up("aisyah@example.com")
    response = await demo.api.post(
        "/api/v1/accounts", json={"email": "AISYAH@example.com", "password": "another password"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"email": "aisyah@example", "password": PASSWORD}, "email", "email_invalid"),
        ({"email": "aisyah@example.com", "password": "short"}, "password", "password_too_short"),
        (
            {"email": "aisyah@example.com", "password": PASSWORD, "language": "fr"},
            "language",
            "language_unsupported",
        ),
        ({"email": "aisyah@example.com", "password": "x" * 257}, "password", "field_too_long"),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, "admin", "field_unknown"),
    ],
)
async def test_sign_up_says_which_field_is_wrong(
    demo: Demo, body: dict[str, Any], field: str, code: str
) -> None:
    response = await demo.api.post("/api/v1/accounts", json=body)
    assert response.status_code == 422
    assert [(error["field"], error["code"]) for error in response.json()["errors"]] == [
        (field, code)
    ]


# --- sign-in, tokens, sign-out ------------------------------------------------------------------


async def test_log_in_gives_a_bearer_token_that_signs_the_account_in(demo: Demo) -> None:
    account = await demo.sign_up("aisyah@example.com")
    response = await demo.log_in("Aisyah@example.com")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == TOKEN_LIFETIME_S
    assert body["expires_at"].startswith("2026-11-25T20:00:00")
    me = await demo.api.get(
        "/api/v1/accounts/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == account


async def test_a_wrong_password_and_an_unknown_email_get_identical_answers(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    wrong_password = await demo.log_in("aisyah@example.com", "not the password")
    unknown_email = await demo.log_in("nobody@example.com", "not the password")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.content == unknown_email.content
    assert wrong_password.headers == unknown_email.headers
    assert wrong_password.json()["code"] == "login_failed"
    assert "errors" not in wrong_password.json()  # no field is named


async def test_five_failures_from_one_address_lock_the_email_there_until_the_lock_time_has_passed(
    demo: Demo,
) -> None:
    await demo.sign_up("aisyah@example.com")
    for _ in range(4):
        assert (await demo.log_in("aisyah@example.com", "wrong password")).status_code == 401
    fifth = await demo.log_in("aisyah@example.com", "wrong password")
    assert fifth.status_code == 429
    assert fifth.json()["code"] == "login_locked"
    assert fifth.headers["retry-after"] == str(LOCK_S)
    right = await demo.log_in("aisyah@example.com")
    assert right.status_code == 429  # even the right password, while locked
    demo.clock.advance(LOCK_S - 1)
    still = await demo.log_in("aisyah@example.com")
    assert (still.status_code, still.headers["retry-after"]) == (429, "1")
    demo.clock.advance(1)
    assert (await demo.log_in("aisyah@example.com")).status_code == 200


async def test_failures_from_another_address_do_not_lock_the_owner_out(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    async with _from_address(demo, ATTACKER_ADDRESS) as attacker:
        statuses = [
            (await attacker.log_in("aisyah@example.com", "wrong password")).status_code
            for _ in range(6)
        ]
        assert statuses == [401] * 4 + [429] * 2
        assert (await attacker.log_in("aisyah@example.com")).status_code == 429
    assert (await demo.log_in("aisyah@example.com", "wrong password")).status_code == 401
    assert (await demo.log_in("aisyah@example.com")).status_code == 200


async def test_failures_spread_over_addresses_never_lock_the_email(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    statuses = []
    for number in range(12):
        async with _from_address(demo, f"198.51.100.{number + 1}") as attacker:
            response = await attacker.log_in("aisyah@example.com", "wrong password")
            statuses.append(response.status_code)
    assert statuses == [401] * 12
    assert (await demo.log_in("aisyah@example.com")).status_code == 200


async def test_after_a_lock_ends_a_failure_counts_from_one_again(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    for _ in range(5):
        await demo.log_in("aisyah@example.com", "wrong password")
    demo.clock.advance(LOCK_S)
    for _ in range(4):
        assert (await demo.log_in("aisyah@example.com", "wrong password")).status_code == 401
    assert (await demo.log_in("aisyah@example.com")).status_code == 200


async def test_failures_older_than_the_lock_time_are_forgotten(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    for _ in range(4):
        await demo.log_in("aisyah@example.com", "wrong password")
    demo.clock.advance(LOCK_S + 1)
    assert (await demo.log_in("aisyah@example.com", "wrong password")).status_code == 401


async def test_an_unknown_email_is_locked_exactly_as_a_registered_one(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    answers: dict[str, list[httpx.Response]] = {}
    for email in ("aisyah@example.com", "nobody@example.com"):
        answers[email] = [await demo.log_in(email, "wrong password") for _ in range(6)]
    registered, unknown = answers.values()
    assert [response.status_code for response in registered] == [401] * 4 + [429] * 2
    assert [response.content for response in registered] == [
        response.content for response in unknown
    ]
    assert [response.headers for response in registered] == [
        response.headers for response in unknown
    ]


async def test_a_successful_sign_in_clears_the_failures(demo: Demo) -> None:
    await demo.sign_up("aisyah@example.com")
    for _ in range(4):
        await demo.log_in("aisyah@example.com", "wrong password")
    assert (await demo.log_in("aisyah@example.com")).status_code == 200
    for _ in range(4):
        assert (await demo.log_in("aisyah@example.com", "wrong password")).status_code == 401


async def test_from_the_third_failure_on_answers_are_slowed_down(make_app: AppFactory) -> None:
    slowdown_s = 0.5
    async with _demo(make_app, LimitSettings(login_slowdown_s=slowdown_s)) as demo:
        for _ in range(2):
            await demo.log_in("nobody@example.com", "wrong password")
        started = time.perf_counter()
        third = await demo.log_in("nobody@example.com", "wrong password")
        assert third.status_code == 401
        assert time.perf_counter() - started >= slowdown_s


async def test_the_slow_down_counts_failures_on_the_email_from_every_address(
    make_app: AppFactory,
) -> None:
    slowdown_s = 0.5
    async with _demo(make_app, LimitSettings(login_slowdown_s=slowdown_s)) as demo:
        for address in ("198.51.100.1", "198.51.100.2"):
            async with _from_address(demo, address) as attacker:
                first_two = await attacker.log_in("aisyah@example.com", "wrong password")
                assert first_two.status_code == 401
        started = time.perf_counter()
        third = await demo.log_in("aisyah@example.com", "wrong password")
        assert third.status_code == 401  # slowed down, not locked
        assert time.perf_counter() - started >= slowdown_s


async def test_sign_ins_from_one_address_are_limited_per_minute(make_app: AppFactory) -> None:
    async with _demo(make_app, LimitSettings(login_slowdown_s=0, login_per_minute_max=2)) as demo:
        for _ in range(2):
            assert (await demo.log_in("nobody@example.com", "wrong")).status_code == 401
        third = await demo.log_in("somebody@example.com", "wrong")
        assert (third.status_code, third.json()["code"]) == (429, "rate_limited")
        assert int(third.headers["retry-after"]) > 0


async def test_log_out_revokes_the_token(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    response = await demo.api.post("/api/v1/auth/logout", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    me = await demo.api.get("/api/v1/accounts/me", headers=headers)
    assert (me.status_code, me.json()["code"]) == (401, "token_invalid")
    again = await demo.api.post("/api/v1/auth/logout", headers=headers)
    assert again.status_code == 401


async def test_log_out_revokes_only_the_token_it_is_sent_with(demo: Demo) -> None:
    first = await demo.bearer("aisyah@example.com")
    second_token = (await demo.log_in("aisyah@example.com")).json()["access_token"]
    await demo.api.post("/api/v1/auth/logout", headers=first)
    me = await demo.api.get(
        "/api/v1/accounts/me", headers={"Authorization": f"Bearer {second_token}"}
    )
    assert me.status_code == 200


async def test_a_token_is_refused_once_it_has_expired(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    demo.clock.advance(TOKEN_LIFETIME_S - 1)
    assert (await demo.api.get("/api/v1/accounts/me", headers=headers)).status_code == 200
    demo.clock.advance(1)
    expired = await demo.api.get("/api/v1/accounts/me", headers=headers)
    assert (expired.status_code, expired.json()["code"]) == (401, "token_invalid")


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-token", "Bearer ", "Basic YWJjOmRlZg==", "Bearer " + "x" * 500]
)
async def test_a_bad_authorization_header_is_refused_never_taken_as_anonymous(
    demo: Demo, authorization: str
) -> None:
    response = await demo.api.get("/api/v1/accounts/me", headers={"Authorization": authorization})
    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/accounts/me", None),
        ("GET", "/api/v1/accounts/me/cards", None),
        ("POST", "/api/v1/accounts/me/cards", {"card_number": CARD}),
        ("POST", "/api/v1/accounts/me/cards/verify", {"card_number": CARD, "code": "123456"}),
        ("POST", "/api/v1/auth/logout", None),
    ],
)
async def test_account_routes_without_a_token_ask_for_authentication(
    demo: Demo, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = await demo.api.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_required"


# --- linking cards ------------------------------------------------------------------------------


async def test_a_card_is_linked_with_the_code_sent_to_it_and_listed_with_its_balance(
    demo: Demo,
) -> None:
    headers = await demo.bearer("aisyah@example.com")
    started = await demo.ask_code(headers, "0123456789")  # the national form works too
    assert started.status_code == 202
    assert started.json() == {
        "card_number": "+60 12-*** 6789",
        "expires_at": "2026-11-25T08:10:00Z",
    }
    verified = await demo.verify(headers, demo.code_sent_to())
    assert verified.status_code == 201
    assert verified.json()["msisdn"] == CARD
    cards = (await demo.api.get("/api/v1/accounts/me/cards", headers=headers)).json()["cards"]
    assert [(card["msisdn"], card["credit"], card["data_quota_mb"]) for card in cards] == [
        (CARD, "5.00", 2048)
    ]


async def test_the_code_is_texted_in_the_accounts_language(demo: Demo) -> None:
    await demo.api.post(
        "/api/v1/accounts",
        json={"email": "mei@example.com", "password": PASSWORD, "language": "zh_Hans"},
    )
    token = (await demo.log_in("mei@example.com")).json()["access_token"]
    await demo.ask_code({"Authorization": f"Bearer {token}"})
    message = demo.sms.last_to(CARD)
    assert message is not None
    assert "验证码" in message.text


async def test_a_wrong_code_is_refused_and_says_how_many_attempts_are_left(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    await demo.ask_code(headers)
    code = demo.code_sent_to()
    wrong = await demo.verify(headers, _wrong_code(code))
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["code"] == "link_code_wrong"
    assert "4" in wrong.json()["detail"]
    assert (await demo.verify(headers, code)).status_code == 201


async def test_a_code_is_refused_once_ten_minutes_have_passed(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    await demo.ask_code(headers)
    demo.clock.advance(600)
    expired = await demo.verify(headers, demo.code_sent_to())
    assert (expired.status_code, expired.json()["code"]) == (409, "link_code_expired")


async def test_after_five_wrong_codes_even_the_right_one_is_refused(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    await demo.ask_code(headers)
    code = demo.code_sent_to()
    statuses = [(await demo.verify(headers, _wrong_code(code))).status_code for _ in range(5)]
    assert statuses == [422, 422, 422, 422, 409]
    right = await demo.verify(headers, code)
    assert (right.status_code, right.json()["code"]) == (409, "link_code_attempts_exceeded")
    cards = await demo.api.get("/api/v1/accounts/me/cards", headers=headers)
    assert cards.json() == {"cards": []}


async def test_a_new_code_replaces_the_one_sent_before(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    await demo.ask_code(headers)
    first = demo.code_sent_to()
    await demo.ask_code(headers)
    second = demo.code_sent_to()
    if first != second:
        assert (await demo.verify(headers, first)).status_code == 422
    assert (await demo.verify(headers, second)).status_code == 201


async def test_a_code_links_once(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    await demo.link(headers)
    again = await demo.verify(headers, demo.code_sent_to())
    assert (again.status_code, again.json()["code"]) == (409, "link_code_expired")
    linked = await demo.ask_code(headers)
    assert (linked.status_code, linked.json()["code"]) == (409, "card_already_linked")


async def test_asking_a_code_for_an_unknown_card_is_not_found(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    response = await demo.ask_code(headers, UNKNOWN_CARD)
    assert (response.status_code, response.json()["code"]) == (404, "card_unknown")
    assert demo.sms.sent() == []


async def test_account_b_sees_none_of_account_a_cards(demo: Demo) -> None:
    alice = await demo.bearer("alice@example.com")
    bob = await demo.bearer("bob@example.com")
    await demo.ask_code(alice)
    code = demo.code_sent_to()
    stolen = await demo.verify(bob, code)  # a code links only for the account that asked it
    assert (stolen.status_code, stolen.json()["code"]) == (409, "link_code_expired")
    assert (await demo.verify(alice, code)).status_code == 201
    bobs = await demo.api.get("/api/v1/accounts/me/cards", headers=bob)
    assert bobs.json() == {"cards": []}
    alices_balance = await demo.api.get(f"/api/v1/cards/{CARD}/balance", headers=alice)
    assert alices_balance.status_code == 200
    bobs_balance = await demo.api.get(f"/api/v1/cards/{CARD}/balance", headers=bob)
    unknown = await demo.api.get(f"/api/v1/cards/{UNKNOWN_CARD}/balance", headers=bob)
    assert bobs_balance.status_code == unknown.status_code == 404
    assert bobs_balance.json()["code"] == unknown.json()["code"] == "card_unknown"


async def test_codes_sent_to_one_card_are_limited_whoever_asks(make_app: AppFactory) -> None:
    limits = LimitSettings(login_slowdown_s=0, login_per_minute_max=1000, sms_codes_per_hour_max=2)
    async with _demo(make_app, limits) as demo:
        alice = await demo.bearer("alice@example.com")
        assert (await demo.ask_code(alice)).status_code == 202
        assert (await demo.ask_code(alice)).status_code == 202
        elsewhere = httpx.ASGITransport(
            app=create_app(demo.application), client=("198.51.100.9", 40000)
        )
        async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as other:
            bobs = Demo(demo.application, other)  # another address, another account
            bob = await bobs.bearer("bob@example.com")
            third = await bobs.ask_code(bob)
            assert (third.status_code, third.json()["code"]) == (429, "rate_limited")
            assert int(third.headers["retry-after"]) > 0
            assert (await bobs.ask_code(bob, OTHER_CARD)).status_code == 202
        assert [message.msisdn for message in demo.sms.sent()] == [CARD, CARD, OTHER_CARD]


async def test_an_sms_provider_failure_is_a_retryable_problem(make_app: AppFactory) -> None:
    application = make_app(limits=LimitSettings(login_slowdown_s=0), sms_failure_rate=1.0)
    await load_demo(application.services)
    async with client_for(application) as client:
        demo = Demo(application, client)
        headers = await demo.bearer("aisyah@example.com")
        response = await demo.ask_code(headers)
    body = response.json()
    assert (body["code"], body["retryable"]) == ("sms_unavailable", True)
    assert demo.sms.sent() == []


# --- what the database keeps --------------------------------------------------------------------


async def test_the_database_holds_no_password_token_or_code_in_clear(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    token = headers["Authorization"].removeprefix("Bearer ")
    await demo.log_in("aisyah@example.com", "a wrong password!")
    await demo.ask_code(headers)
    code = demo.code_sent_to()
    await demo.verify(headers, _wrong_code(code))
    await demo.ask_code(headers, OTHER_CARD)
    other_code = demo.code_sent_to(OTHER_CARD)
    stored: list[str] = []
    async with demo.application.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                stored.extend(str(value) for value in row)
    everything = "\n".join(stored)
    assert "aisyah@example.com" in everything  # the scan sees the accounts table
    for secret in (PASSWORD, "a wrong password!", token):
        assert secret not in everything
    for digits in (code, other_code):  # as a whole word: not by chance inside a hash or ICCID
        assert not re.search(rf"(?<![0-9A-Za-z]){digits}(?![0-9A-Za-z])", everything)
    hashes = [value for value in stored if value.startswith("$argon2id$")]
    assert len(hashes) == 1


# --- housekeeping -------------------------------------------------------------------------------


async def _rows(demo: Demo, table: Any) -> int:
    async with demo.application.engine.connect() as connection:
        counted: int = (
            await connection.execute(select(func.count()).select_from(table))
        ).scalar_one()
    return counted


async def test_the_worker_forgets_attempt_counts_and_codes_once_they_are_over(demo: Demo) -> None:
    headers = await demo.bearer("aisyah@example.com")
    await demo.ask_code(headers)
    for _ in range(5):  # a lock, on the e-mail from this address
        await demo.log_in("nobody@example.com", "wrong password")
    await demo.log_in("mei@example.com", "wrong password")  # a count, no lock
    assert await _rows(demo, tables.login_failures) == 4  # per address and per e-mail, twice
    assert await _rows(demo, tables.card_link_codes) == 1
    demo.clock.advance(LOCK_S - 1)
    await work_once(demo.application.services)
    assert await _rows(demo, tables.login_failures) == 4  # the windows are not over yet
    assert await _rows(demo, tables.card_link_codes) == 0  # the code lasted 10 minutes
    demo.clock.advance(1)
    await work_once(demo.application.services)
    assert await _rows(demo, tables.login_failures) == 0


async def test_a_lock_outlasting_its_window_is_kept_until_it_ends(demo: Demo) -> None:
    for _ in range(4):
        await demo.log_in("nobody@example.com", "wrong password")
    demo.clock.advance(LOCK_S - 1)
    locking = await demo.log_in("nobody@example.com", "wrong password")
    assert (locking.status_code, locking.headers["retry-after"]) == (429, str(LOCK_S))
    demo.clock.advance(1)  # the window of the first failure is over; the lock is not
    assert await accounts.prune(demo.application.services, limit=10) == 1  # the e-mail's count
    still = await demo.log_in("nobody@example.com")
    assert (still.status_code, still.headers["retry-after"]) == (429, str(LOCK_S - 1))
    demo.clock.advance(LOCK_S)  # the lock is over, and so is the e-mail's new window
    assert await accounts.prune(demo.application.services, limit=10) == 2


async def test_pruning_forgets_at_most_the_limit_at_once(demo: Demo) -> None:
    for number in range(3):
        await demo.log_in(f"nobody{number}@example.com", "wrong password")
    demo.clock.advance(LOCK_S)
    services = demo.application.services
    assert await accounts.prune(services, limit=4) == 4
    assert await accounts.prune(services, limit=4) == 2
    assert await accounts.prune(services, limit=4) == 0
