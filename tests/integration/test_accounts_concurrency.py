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
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.domain.errors import TopupError
from topup.services import accounts
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
    await accounts.sign_up(services, email="aisyah@example.com", password=PASSWORD, language="en")

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
    await accounts.sign_up(services, email="aisyah@example.com", password=PASSWORD, language="en")
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
    account = await accounts.sign_up(
        services, email="aisyah@example.com", password=PASSWORD, language="en"
    )
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
