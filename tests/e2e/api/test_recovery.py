"""POST /api/v1/card-number-recovery (R8), on SQLite and PostgreSQL: the same answer whether or not
an e-mail address is registered, the full numbers by e-mail to that address (found on the card,
through an account that linked it, or with a paid renewal), and the rate limits."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest

from tests.conftest import START, AppFactory
from tests.e2e.api.conftest import client_for
from tests.integration.test_smtp_mailer import running_smtp_server
from tests.mailed_links import confirmed_account
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.bootstrap import Application
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.money import Money
from topup.entrypoints.api.app import create_app
from topup.ports import PaymentCardDetails
from topup.services import recovery
from topup.services.demo import load_demo
from topup.services.receipts import mailings
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings

PATH = "/api/v1/card-number-recovery"
REGISTERED = "aisyah@example.com"  # the demo card +60 12-345 6789
UNREGISTERED = "nobody@example.com"
GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
DECLINED_CARD = PaymentCardDetails(
    number="4000000000009995", expiry_month=12, expiry_year=2030, cvc="123"
)


def memory_mailer(application: Application) -> MemoryMailer:
    mailer = application.services.mailer
    assert isinstance(mailer, MemoryMailer)
    return mailer


async def mailed(application: Application) -> MemoryMailer:
    """The mailer once every recovery under way is done."""
    await mailings(application.services).drain()
    return memory_mailer(application)


def client_from(application: Application, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(application), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def add_card(application: Application, national: str, email: str) -> None:
    services = application.services
    async with services.unit_of_work() as uow:
        await uow.cards.add(
            Card(
                id=str(uuid.uuid4()),
                msisdn=f"+60{national}",
                iccid=f"8960{national}00000",
                kind=CardKind.PREPAID,
                status=CardStatus.ACTIVE,
                currency="MYR",
                credit=Money(0, "MYR"),
                data_quota_mb=0,
                validity_end=START,
                bill_due=Money(0, "MYR"),
                bill_due_date=None,
                holder_name="Aisyah Rahman",
                email=email,
            ),
            at=START,
        )
        await uow.commit()


async def test_a_registered_and_an_unregistered_address_get_the_same_answer(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    registered = await api.post(PATH, json={"email": REGISTERED})
    unregistered = await api.post(PATH, json={"email": UNREGISTERED})
    assert registered.status_code == unregistered.status_code == 202
    assert registered.content == unregistered.content
    assert registered.headers == unregistered.headers
    assert registered.json()["status"] == "accepted"
    mailer = await mailed(demo_app)
    assert [mail.recipient for mail in mailer.sent] == [REGISTERED]


async def test_the_owner_receives_every_card_registered_with_the_address_in_full(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    await add_card(demo_app, "198880001", "AISYAH@Example.com")
    response = await api.post(PATH, json={"email": "  Aisyah@EXAMPLE.com "})
    assert response.status_code == 202
    [mail] = (await mailed(demo_app)).sent
    assert mail.recipient == REGISTERED  # the address as registered with the first card
    assert "+60 12-345 6789" in mail.body
    assert "+60 19-888 0001" in mail.body
    assert "*" not in mail.body


async def test_a_card_whose_paid_renewal_gave_the_address_is_found_and_an_unpaid_one_is_not(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    services = demo_app.services
    await renew(
        services,
        RenewalRequest(
            card_number="0123456789",
            plan_code="pack_5gb_7d",
            payment=GOOD_CARD,
            receipt_email="Payer@Example.com",
            receipt_language="en",
        ),
    )
    declined = await renew(
        services,
        RenewalRequest(
            card_number="0123450001",
            plan_code="pack_5gb_7d",
            payment=DECLINED_CARD,
            receipt_email="declined@example.com",
            receipt_language="en",
        ),
    )
    assert declined.status == "declined"
    await mailed(demo_app)
    memory_mailer(demo_app).sent.clear()  # the receipt
    found = await api.post(PATH, json={"email": "payer@example.com"})
    not_found = await api.post(PATH, json={"email": "declined@example.com"})
    assert found.content == not_found.content
    [mail] = (await mailed(demo_app)).sent
    assert mail.recipient == "Payer@Example.com"
    assert "+60 12-345 6789" in mail.body
    assert "+60 12-345 0001" not in mail.body


async def test_a_card_linked_to_a_confirmed_account_with_the_address_is_found(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    services = demo_app.services
    account = await confirmed_account(services, email="mei@example.com", password="a password!")
    async with services.unit_of_work() as uow:
        found = await uow.cards.by_number(msisdn="+60198765432")
        assert found is not None
        await uow.accounts.link_card(account.id, found.id, at=services.clock.now())
        await uow.commit()
    memory_mailer(demo_app).sent.clear()  # the confirmation link
    assert (await api.post(PATH, json={"email": "Mei@example.com"})).status_code == 202
    [mail] = (await mailed(demo_app)).sent
    assert mail.recipient == "mei@example.com"
    assert "+60 19-876 5432" in mail.body


async def test_the_email_is_in_the_language_of_the_request(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    response = await api.post(PATH, json={"email": REGISTERED}, headers={"Accept-Language": "zh"})
    assert response.status_code == 202
    assert response.headers["content-language"] == "zh-Hans"
    [mail] = (await mailed(demo_app)).sent
    assert mail.subject == "以此电子邮箱登记的上网卡号码"
    assert "+60 12-345 6789" in mail.body


async def test_the_email_arrives_through_a_real_smtp_server(make_app: AppFactory) -> None:
    with running_smtp_server() as (sink, port):
        application = make_app(smtp_url=f"smtp://127.0.0.1:{port}")
        await load_demo(application.services)
        async with client_for(application) as api:
            response = await api.post(PATH, json={"email": REGISTERED})
        assert response.status_code == 202
        await mailings(application.services).drain()
    [(recipients, message)] = sink.messages
    assert recipients == [REGISTERED]
    body = message.get_content()
    assert "+60 12-345 6789" in body


async def test_a_mail_server_that_is_down_changes_nothing_in_the_answer(
    demo_app: Application, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    memory_mailer(demo_app).failing = True
    with caplog.at_level(logging.WARNING, logger="topup.recovery"):
        response = await api.post(PATH, json={"email": REGISTERED})
        await mailed(demo_app)
    assert response.status_code == 202
    assert "mail_unavailable" in caplog.text


async def test_requests_beyond_the_limit_per_client_address_are_429_alike_for_any_address(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(recovery_per_hour_max=2))
    await load_demo(application.services)
    async with client_for(application) as api:
        for address in (REGISTERED, UNREGISTERED):
            assert (await api.post(PATH, json={"email": address})).status_code == 202
        registered = await api.post(PATH, json={"email": REGISTERED})
        unregistered = await api.post(PATH, json={"email": UNREGISTERED})
    assert registered.status_code == unregistered.status_code == 429
    assert registered.content == unregistered.content
    assert registered.headers == unregistered.headers
    assert int(registered.headers["retry-after"]) > 0
    assert registered.json()["code"] == "rate_limited"


async def test_requests_beyond_the_limit_per_email_address_are_429_from_any_client(
    make_app: AppFactory,
) -> None:
    application = make_app(limits=LimitSettings(recovery_per_hour_max=2))
    await load_demo(application.services)
    answers = []
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        async with client_from(application, address) as api:
            answers.append(await api.post(PATH, json={"email": UNREGISTERED.upper()}))
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    async with client_from(application, "198.51.100.4") as api:
        other = await api.post(PATH, json={"email": REGISTERED})
    assert other.status_code == 202  # another address has its own count


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not an address"},
        {"email": "aisyah@"},
        {"email": "a,b@example.com"},
        {"email": "x" * 250 + "@example.com"},
        {"email": REGISTERED, "extra": 1},
        {},
    ],
)
async def test_a_malformed_request_is_a_422_that_reveals_nothing(
    demo_app: Application, api: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await api.post(PATH, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] in {"email_invalid", "invalid_request"}
    assert list((await mailed(demo_app)).sent) == []


async def test_at_most_the_configured_number_of_mailings_run_at_once_and_more_are_dropped(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    application = make_app(limits=LimitSettings(mailings_in_flight_max=1))
    await load_demo(application.services)
    services = application.services
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    runner = mailings(services)
    assert runner.start(slow()) is True
    with caplog.at_level(logging.WARNING, logger="topup.recovery"):
        recovery.request_card_numbers(services, REGISTERED, "en")
    assert "dropped" in caplog.text
    assert runner.in_flight == 1
    release.set()
    await runner.drain()
    assert runner.in_flight == 0
    assert list(memory_mailer(application).sent) == []


class HeldMailer(MemoryMailer):
    """Takes each message only once ``release`` is set: a slow mail server."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def send(self, recipient: str, subject: str, body: str) -> None:
        await self.release.wait()
        await super().send(recipient, subject, body)


async def test_the_answer_does_not_wait_for_the_look_up_or_the_email(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    held = HeldMailer()
    demo_app.services.mailer = held
    response = await api.post(PATH, json={"email": REGISTERED})
    assert response.status_code == 202
    assert list(held.sent) == []
    assert mailings(demo_app.services).in_flight == 1
    held.release.set()
    await mailings(demo_app.services).drain()
    assert [mail.recipient for mail in held.sent] == [REGISTERED]
