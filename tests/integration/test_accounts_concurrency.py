"""Accounts under concurrent requests, on SQLite and PostgreSQL: every sign-in attempt and every
wrong code counts, however many arrive at once, and no more passwords are checked than the
limit allows."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from argon2 import PasswordHasher

from tests.conftest import AppFactory
from tests.mailed_links import confirmed_account, mails_to, token_in
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.domain.errors import TopupError
from topup.services import account_emails, accounts
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.settings import LimitSettings

CARD = "+60123456789"
PASSWORD = "correct horse battery"
ADDRESS = "203.0.113.7"
WAIT_S = 30.0  # how long a test waits for the requests it started, before it fails
THREADS = 16  # the test's own thread pool: verifications held back must not starve it


class _HeldHasher(PasswordHasher):
    """argon2 that counts the passwords it checks and holds each check until released."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0
        self.release = threading.Event()
        self._counting = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._counting:
            self.verified += 1
        self.release.wait(timeout=WAIT_S)
        return super().verify(hash, password)


async def _until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("the concurrent sign-ins did not get where they should")
        await asyncio.sleep(0.01)


def _code(sms: object) -> str:
    """The code in the last text the card received."""
    assert isinstance(sms, SandboxSms)
    message = sms.last_to(CARD)
    assert message is not None
    found = re.search(r"(?<!\d)\d{6}(?!\d)", message.text)
    assert found is not None
    return found.group()


async def test_concurrent_failed_sign_ins_are_all_counted_and_lock_the_email_from_the_address(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(login_slowdown_s=0, login_failures_max=5))
    services = application.services
    await confirmed_account(services, email="aisyah@example.com", password=PASSWORD)

    async def attempt() -> str:
        try:
            await accounts.log_in(
                services,
                email="aisyah@example.com",
                password="wrong password",
                client_address=ADDRESS,
            )
        except TopupError as error:
            return error.code
        return "signed_in"

    codes = await asyncio.gather(*(attempt() for _ in range(8)))
    assert "signed_in" not in codes
    assert codes.count("login_locked") >= 4  # the fifth failure locks; later ones are refused
    with pytest.raises(TopupError) as caught:
        await accounts.log_in(
            services, email="aisyah@example.com", password=PASSWORD, client_address=ADDRESS
        )
    assert caught.value.code == "login_locked"


async def test_in_a_burst_no_more_passwords_are_checked_than_the_limit_not_even_the_right_one(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=THREADS))
    application = make_app(limits=LimitSettings(login_slowdown_s=0, login_failures_max=5))
    services = application.services
    await confirmed_account(services, email="aisyah@example.com", password=PASSWORD)
    hasher = _HeldHasher()
    monkeypatch.setattr(accounts, "_HASHER", hasher)

    async def attempt(password: str) -> str:
        try:
            await accounts.log_in(
                services, email="aisyah@example.com", password=password, client_address=ADDRESS
            )
        except TopupError as error:
            return error.code
        return "signed_in"

    wrong = [asyncio.create_task(attempt("wrong password")) for _ in range(30)]
    try:
        # Five wrong passwords are being checked, none has failed yet, and the 25 other
        # attempts were refused unchecked. The right password comes now: it is refused too.
        await _until(lambda: hasher.verified == 5 and sum(task.done() for task in wrong) == 25)
        assert await attempt(PASSWORD) == "login_locked"
        assert hasher.verified == 5
    finally:
        hasher.release.set()
    codes = await asyncio.gather(*wrong)
    assert Counter(codes) == {"login_failed": 4, "login_locked": 26}
    assert await attempt(PASSWORD) == "login_locked"
    assert hasher.verified == 5


async def test_concurrent_wrong_codes_never_get_more_than_five_attempts(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(login_slowdown_s=0))
    services = application.services
    await load_demo(services)
    account = await confirmed_account(services, email="aisyah@example.com", password=PASSWORD)
    await accounts.start_card_link(services, account.id, CARD)
    code = _code(services.sms)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    async def attempt(typed: str) -> str:
        try:
            await accounts.verify_card_link(services, account.id, CARD, typed)
        except TopupError as error:
            return error.code
        return "linked"

    codes = await asyncio.gather(*(attempt(wrong) for _ in range(12)))
    assert codes.count("link_code_wrong") == 4
    assert codes.count("link_code_attempts_exceeded") == 8
    assert await attempt(code) == "link_code_attempts_exceeded"
    assert await accounts.my_cards(services, account.id) == []


# --- password reset and confirmation under concurrent requests --------------------------------


async def _reset_links(services: Services, count: int) -> list[str]:
    for _ in range(count):
        await account_emails.send_password_reset(services, "aisyah@example.com", "en")
    sent = await mails_to(services, "aisyah@example.com")
    return [token_in(mail) for mail in sent if "password-reset?token=" in mail.body]


async def test_a_sign_in_whose_password_was_checked_before_a_reset_gets_no_token_after_it(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=THREADS))
    application = make_app(limits=LimitSettings(login_slowdown_s=0))
    services = application.services
    await confirmed_account(services, email="aisyah@example.com", password=PASSWORD)
    [link] = await _reset_links(services, 1)
    hasher = _HeldHasher()
    monkeypatch.setattr(accounts, "_HASHER", hasher)
    signing_in = asyncio.create_task(
        accounts.log_in(
            services, email="aisyah@example.com", password=PASSWORD, client_address=ADDRESS
        )
    )
    try:
        await _until(lambda: hasher.verified == 1)  # the old password is being checked
        await account_emails.reset_password(services, token=link, password="a brand new password")
    finally:
        hasher.release.set()
    with pytest.raises(TopupError) as caught:
        await signing_in
    assert caught.value.code == "login_failed"


async def test_of_concurrent_resets_with_different_links_exactly_one_sets_the_password(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(login_slowdown_s=0))
    services = application.services
    await confirmed_account(services, email="aisyah@example.com", password=PASSWORD)
    links = await _reset_links(services, 4)

    async def reset(link: str, number: int) -> str:
        try:
            await account_emails.reset_password(
                services, token=link, password=f"new password {number}"
            )
        except TopupError as error:
            return error.code
        return f"reset {number}"

    async with asyncio.timeout(WAIT_S):
        outcomes = await asyncio.gather(
            *(reset(link, number) for number, link in enumerate(links * 2))
        )
    [winner] = [outcome for outcome in outcomes if outcome.startswith("reset ")]
    assert outcomes.count("reset_token_invalid") == len(outcomes) - 1
    issued = await accounts.log_in(
        services,
        email="aisyah@example.com",
        password=f"new password {winner.removeprefix('reset ')}",
        client_address=ADDRESS,
    )
    assert issued.access_token


async def test_of_concurrent_confirmations_of_one_account_exactly_one_confirms_it(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(login_slowdown_s=0))
    services = application.services
    for number in range(4):
        await account_emails.sign_up(
            services,
            email="aisyah@example.com",
            password=f"sign-up password {number}",
            language="en",
            locale="en",
        )
    links = [token_in(mail) for mail in await mails_to(services, "aisyah@example.com")]

    async def confirm(link: str) -> str:
        try:
            await account_emails.confirm_email(services, link)
        except TopupError as error:
            return error.code
        return "confirmed"

    async with asyncio.timeout(WAIT_S):
        outcomes = await asyncio.gather(*(confirm(link) for link in links))
    assert sorted(outcomes) == ["confirmation_token_invalid"] * 3 + ["confirmed"]
