"""Accounts under concurrent requests, on SQLite and PostgreSQL: every failed sign-in and every
wrong code counts, however many arrive at once."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.conftest import AppFactory
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.domain.errors import TopupError
from topup.services import accounts
from topup.services.demo import load_demo
from topup.settings import Limits

CARD = "+60123456789"
PASSWORD = "correct horse battery"


def _code(sms: object) -> str:
    """The code in the last text the card received."""
    assert isinstance(sms, SandboxSms)
    message = sms.last_to(CARD)
    assert message is not None
    found = re.search(r"(?<!\d)\d{6}(?!\d)", message.text)
    assert found is not None
    return found.group()


async def test_concurrent_failed_sign_ins_are_all_counted_and_lock_the_email(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=Limits(login_slowdown_s=0, login_failures_max=5))
    services = application.services
    await accounts.sign_up(services, email="aisyah@example.com", password=PASSWORD, language="en")

    async def attempt() -> str:
        try:
            await accounts.log_in(services, email="aisyah@example.com", password="wrong password")
        except TopupError as error:
            return error.code
        return "signed_in"

    codes = await asyncio.gather(*(attempt() for _ in range(8)))
    assert "signed_in" not in codes
    assert codes.count("login_locked") >= 4  # the fifth failure locks; later ones are refused
    with pytest.raises(TopupError) as caught:
        await accounts.log_in(services, email="aisyah@example.com", password=PASSWORD)
    assert caught.value.code == "login_locked"


async def test_concurrent_wrong_codes_never_get_more_than_five_attempts(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=Limits(login_slowdown_s=0))
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
