"""Forgot my number (R8), over HTTP with JavaScript off: by receipt number and verification code,
by registered e-mail (the same answer whether or not it is registered; the numbers go by e-mail
to that address only), and how to reach customer service."""

from __future__ import annotations

import re

import httpx

from tests.e2e.web.conftest import csrf_of
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.bootstrap import Application
from topup.entrypoints.site import create_site
from topup.ports import PaymentCardDetails
from topup.services.receipts import mailings, verification_code
from topup.services.renewals import RenewalRequest, renew

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "012-345 6789"


async def post_form(
    site: httpx.AsyncClient, form_page: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    """Open the form's page (for its CSRF token), then send the form as a browser does."""
    page = await site.get(form_page)
    assert page.status_code == 200
    return await site.post(action, data={"csrf_token": csrf_of(page.text), **fields})


async def paid_receipt(application: Application, email: str | None = None) -> tuple[str, str]:
    view = await renew(
        application.services,
        RenewalRequest(
            card_number=ACTIVE_CARD, plan_code="pack_5gb_7d", payment=GOOD_CARD, receipt_email=email
        ),
    )
    number = view.renewal.receipt_number
    assert number is not None
    return number, verification_code(application.services, number)


def mailer_of(application: Application) -> MemoryMailer:
    mailer = application.services.mailer
    assert isinstance(mailer, MemoryMailer)
    return mailer


async def test_the_recovery_page_offers_a_receipt_an_email_and_customer_service(
    site: httpx.AsyncClient,
) -> None:
    page = await site.get("/recover")

    assert page.status_code == 200
    assert 'href="/recover/receipt"' in page.text
    assert 'href="/recover/email"' in page.text
    assert 'href="tel:+60327000000"' in page.text
    assert "help@topup.example" in page.text
    assert "Every day, 8 am to 10 pm" in page.text


async def test_customer_service_is_shown_in_the_visitors_language(
    site: httpx.AsyncClient,
) -> None:
    page = await site.get("/recover", headers={"accept-language": "zh-CN"})

    assert page.headers["content-language"] == "zh-Hans"
    assert "每天上午 8 点至晚上 10 点" in page.text
    assert "忘记" in page.text


async def test_a_receipt_number_and_its_code_show_the_card_number_in_full(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    number, code = await paid_receipt(demo_app)

    answer = await post_form(
        site,
        "/recover/receipt",
        "/recover/receipt",
        {"receipt_number": number.lower().replace("-", " "), "verification_code": code},
    )

    assert answer.status_code == 200
    assert "+60 12-345 6789" in answer.text
    assert number in answer.text
    assert answer.headers["cache-control"] == "no-store"


async def test_a_wrong_code_is_answered_beside_the_field_like_an_unknown_receipt(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    number, _ = await paid_receipt(demo_app)
    answers = [
        await post_form(
            site,
            "/recover/receipt",
            "/recover/receipt",
            {"receipt_number": typed, "verification_code": "00000-00000"},
        )
        for typed in (number, "R-2222-2222-2222")
    ]

    for answer in answers:
        assert answer.status_code == 404
        assert "6789" not in answer.text
        assert "data-error-summary" in answer.text
        assert 'href="#receipt_number"' in answer.text
        assert 'aria-invalid="true"' in answer.text
        assert "We cannot show this receipt" in answer.text
    assert answers[0].text.replace(number, "R-2222-2222-2222") == answers[1].text


async def test_a_malformed_receipt_number_is_explained_in_the_visitors_language(
    site: httpx.AsyncClient,
) -> None:
    answer = await post_form(
        site,
        "/recover/receipt",
        "/recover/receipt",
        {"receipt_number": "12345", "verification_code": "x"},
    )
    site.cookies.set("topup_language", "ms")
    malay = await post_form(
        site,
        "/recover/receipt",
        "/recover/receipt",
        {"receipt_number": "12345", "verification_code": "x"},
    )

    assert answer.status_code == 422
    assert "R-XXXX-XXXX-XXXX" in answer.text
    assert 'value="12345"' in answer.text
    assert "Nombor resit berbentuk R-XXXX-XXXX-XXXX" in malay.text


async def test_receipt_attempts_are_limited_per_hour_like_recovery(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    limit = demo_app.services.limits.rates.recovery_per_hour_max
    statuses = [
        (
            await post_form(
                site,
                "/recover/receipt",
                "/recover/receipt",
                {"receipt_number": "R-2222-2222-2222", "verification_code": "00000-00000"},
            )
        ).status_code
        for _ in range(limit + 1)
    ]

    assert statuses == [404] * limit + [429]


async def test_the_numbers_go_by_email_to_a_registered_address_and_the_page_says_nothing(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    await paid_receipt(demo_app, email="aisyah@example.com")
    mailer = mailer_of(demo_app)
    before = len(mailer.sent)

    registered = await post_form(
        site, "/recover/email", "/recover/email", {"email": " Aisyah@Example.com "}
    )
    unknown = await post_form(
        site, "/recover/email", "/recover/email", {"email": "nobody@example.com"}
    )
    await mailings(demo_app.services).drain()

    assert registered.status_code == unknown.status_code == 303
    assert registered.headers["location"] == unknown.headers["location"] == "/recover/email/sent"
    assert "example.com" not in registered.headers["location"]
    sent = list(mailer.sent)[before:]
    assert [mail.recipient for mail in sent] == ["aisyah@example.com"]
    assert "+60 12-345 6789" in sent[0].body
    answer = await site.get("/recover/email/sent")
    assert answer.status_code == 200
    assert "If this address is registered with us" in answer.text


async def test_the_recovery_email_is_written_in_the_visitors_language(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    await paid_receipt(demo_app, email="wei@example.com")
    mailer = mailer_of(demo_app)
    before = len(mailer.sent)
    site.cookies.set("topup_language", "zh-Hans")

    await post_form(site, "/recover/email", "/recover/email", {"email": "wei@example.com"})
    await mailings(demo_app.services).drain()

    sent = list(mailer.sent)[before:]
    assert len(sent) == 1
    assert "+60 12-345 6789" in sent[0].body
    assert re.search(r"[\u4e00-\u9fff]", sent[0].subject + sent[0].body)


async def test_an_address_that_is_not_one_is_answered_beside_the_field(
    site: httpx.AsyncClient,
) -> None:
    answer = await post_form(site, "/recover/email", "/recover/email", {"email": "aisyah@"})

    assert answer.status_code == 422
    assert 'href="#email"' in answer.text
    assert "This is not a valid e-mail address" in answer.text
    assert 'value="aisyah@"' in answer.text


async def test_email_recovery_shares_the_apis_limits_per_address(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    limit = demo_app.services.limits.rates.recovery_per_hour_max
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_site(demo_app), client=("198.51.100.4", 1)),
        base_url="http://testserver",
    )
    async with api:
        for _ in range(limit):
            accepted = await api.post(
                "/api/v1/card-number-recovery", json={"email": "siti@example.com"}
            )
            assert accepted.status_code == 202

    answer = await post_form(
        site, "/recover/email", "/recover/email", {"email": "siti@example.com"}
    )
    await mailings(demo_app.services).drain()

    assert answer.status_code == 429
    assert "retry-after" in answer.headers
    assert "Too many attempts" in answer.text


async def test_a_recovery_form_without_its_csrf_token_is_refused(site: httpx.AsyncClient) -> None:
    await site.get("/recover/email")
    answer = await site.post(
        "/recover/email",
        data={"email": "aisyah@example.com"},
        headers={"sec-fetch-site": "same-origin"},
    )

    assert answer.status_code == 403
