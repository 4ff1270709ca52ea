"""GET /api/v1/receipts/{receipt_number} (JSON and PDF), who may read a receipt, and e-mailing
it, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from httpx import AsyncClient

from tests.mailed_links import confirmed_account
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.bootstrap import Application
from topup.domain.callers import ANONYMOUS, ApiKeyRole, Caller, CallerKind
from topup.domain.errors import InputError, NotFoundError, TopupError
from topup.entrypoints.api import receipts as receipts_route
from topup.entrypoints.worker import work_once
from topup.ports import PaymentCardDetails
from topup.services.receipts import (
    mailings,
    receipt_of,
    send_receipt,
    send_receipt_later,
    verification_code,
)
from topup.services.renewals import RenewalRequest, renew
from topup.services.views import RenewalView

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
DECLINED_CARD = PaymentCardDetails(
    number="4000000000009995", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "012-345 6789"
NETWORK_FAILURE_CARD = "+60123400000"  # the sandbox network refuses it for good: refunded
STAFF = Caller(kind=CallerKind.API_KEY, role=ApiKeyRole.STAFF, api_key_id="k")


async def paid(
    application: Application,
    card: str = ACTIVE_CARD,
    plan: str = "pack_5gb_7d",
    payment: PaymentCardDetails = GOOD_CARD,
) -> RenewalView:
    return await renew(
        application.services, RenewalRequest(card_number=card, plan_code=plan, payment=payment)
    )


def number_of(view: RenewalView) -> str:
    number = view.renewal.receipt_number
    assert number is not None
    return number


async def _created_over_http(api: AsyncClient, number: str, key: str) -> dict[str, Any]:
    tokenised = await api.post(
        "/sandbox/psp/v1/tokens",
        json={"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
    )
    body = {
        "card_number": ACTIVE_CARD,
        "plan": "pack_5gb_7d",
        "payment": {"method": "credit_card", "token": tokenised.json()["token"]},
    }
    response = await api.post("/api/v1/renewals", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_the_payer_holding_the_client_secret_is_given_the_receipt_once_paid(
    api: AsyncClient,
) -> None:
    created = await _created_over_http(api, GOOD_CARD.number, "payer-1")
    number, code = created["receipt_number"], created["verification_code"]
    assert number.startswith("R-")
    assert code is not None
    read = await api.get(
        f"/api/v1/renewals/{created['id']}", headers={"X-Client-Secret": created["client_secret"]}
    )
    assert (read.json()["receipt_number"], read.json()["verification_code"]) == (number, code)
    receipt = await api.get(f"/api/v1/receipts/{number}", headers={"X-Verification-Code": code})
    assert receipt.status_code == 200
    hidden = await api.get(f"/api/v1/renewals/{created['id']}")
    assert hidden.status_code == 404
    assert code not in hidden.text


async def test_a_renewal_not_yet_paid_shows_no_receipt_number_or_verification_code(
    api: AsyncClient,
) -> None:
    created = await _created_over_http(api, "4000000000003220", "payer-2")  # waits for 3-D Secure
    assert created["status"] == "requires_action"
    assert (created["receipt_number"], created["verification_code"]) == (None, None)
    read = await api.get(
        f"/api/v1/renewals/{created['id']}", headers={"X-Client-Secret": created["client_secret"]}
    )
    assert (read.json()["receipt_number"], read.json()["verification_code"]) == (None, None)


async def test_a_paid_renewals_receipt_is_shown_with_its_verification_code(
    demo_app: Application, api: AsyncClient
) -> None:
    view = await paid(demo_app)
    number = number_of(view)
    code = verification_code(demo_app.services, number)
    response = await api.get(f"/api/v1/receipts/{number}", params={"verification_code": code})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    receipt = response.json()
    assert receipt["receipt_number"] == number
    assert receipt["verification_code"] == code
    assert receipt["renewal_id"] == view.id
    assert receipt["status"] == "activating"
    assert receipt["card_number"] == "+60 12-*** 6789"
    assert receipt["card_kind"] == "prepaid"
    assert receipt["plan_code"] == "pack_5gb_7d"
    assert receipt["plan_name"] == "5 GB, 7 days"
    assert (receipt["amount"], receipt["amount_minor"], receipt["currency"]) == (
        "10.00",
        1000,
        "MYR",
    )
    assert receipt["payment"] == {
        "method": "credit_card",
        "method_name": "credit card",
        "brand": "visa",
        "last4": "4242",
    }
    assert receipt["paid_at"] == "2026-11-25T08:00:00Z"
    assert receipt["paid_at_local"] == "2026-11-25T16:00:00+08:00"
    assert receipt["time_zone"] == "Asia/Kuala_Lumpur"
    assert receipt["refund"] is None
    assert "123456789" not in response.text


async def test_the_receipt_number_and_code_are_accepted_as_someone_types_them(
    demo_app: Application, api: AsyncClient
) -> None:
    number = number_of(await paid(demo_app))
    code = verification_code(demo_app.services, number)
    typed_number = number.lower().replace("-", " ")
    typed_code = code.lower().replace("-", "")
    response = await api.get(
        f"/api/v1/receipts/{typed_number}", params={"verification_code": typed_code}
    )
    assert response.status_code == 200, response.text
    assert response.json()["receipt_number"] == number


async def test_the_plan_name_is_in_the_callers_language(
    demo_app: Application, api: AsyncClient
) -> None:
    number = number_of(await paid(demo_app))
    code = verification_code(demo_app.services, number)
    response = await api.get(
        f"/api/v1/receipts/{number}",
        params={"verification_code": code},
        headers={"Accept-Language": "zh-CN"},
    )
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["plan_name"] == receipt["plan_names"]["zh_Hans"]
    assert receipt["plan_name"] != receipt["plan_names"]["en"]


async def test_a_wrong_or_missing_code_an_unknown_and_an_unpaid_number_are_one_identical_404(
    demo_app: Application, api: AsyncClient
) -> None:
    number = number_of(await paid(demo_app))
    declined = await paid(demo_app, payment=DECLINED_CARD)
    assert declined.status == "declined"
    unpaid = number_of(declined)
    code_of_unpaid = verification_code(demo_app.services, unpaid)  # right there, wrong here
    answers = [
        await api.get(f"/api/v1/receipts/{number}"),
        await api.get(f"/api/v1/receipts/{number}", params={"verification_code": code_of_unpaid}),
        await api.get("/api/v1/receipts/R-0000-0000-0000", params={"verification_code": "X"}),
        await api.get(f"/api/v1/receipts/{unpaid}", params={"verification_code": code_of_unpaid}),
    ]
    assert {answer.status_code for answer in answers} == {404}
    assert {answer.content for answer in answers} == {answers[0].content}
    assert answers[0].headers["content-type"] == "application/problem+json"
    assert answers[0].json()["code"] == "receipt_unknown"


async def test_a_malformed_receipt_number_is_an_input_problem(api: AsyncClient) -> None:
    response = await api.get("/api/v1/receipts/not-a-receipt")
    assert response.status_code == 422
    assert response.json()["code"] == "receipt_number_invalid"


async def test_the_receipt_is_a_pdf_when_the_caller_accepts_one(
    demo_app: Application, api: AsyncClient
) -> None:
    number = number_of(await paid(demo_app))
    code = verification_code(demo_app.services, number)
    for language in ("en", "zh-Hans", "ms", "id"):
        response = await api.get(
            f"/api/v1/receipts/{number}",
            params={"verification_code": code},
            headers={"Accept": "application/pdf", "Accept-Language": language},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-language"] == language
        assert response.content.startswith(b"%PDF-")
        assert response.content.rstrip().endswith(b"%%EOF")


async def test_the_pdfs_english_lines_name_the_plan_and_the_method_in_english(
    demo_app: Application, api: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = number_of(await paid(demo_app))
    drawn: dict[str, Any] = {}

    def draw(local: list[tuple[str, str]], english: list[tuple[str, str]], **_: Any) -> bytes:
        drawn.update(local=local, english=english)
        return b"%PDF-1.4 %%EOF"

    monkeypatch.setattr(receipts_route, "draw_receipt", draw)
    response = await api.get(
        f"/api/v1/receipts/{number}",
        params={"verification_code": verification_code(demo_app.services, number)},
        headers={"Accept": "application/pdf", "Accept-Language": "zh-Hans"},
    )
    assert response.status_code == 200, response.text
    assert ("付款方式", "信用卡 VISA 4242") in drawn["local"]
    assert ("Payment", "credit card VISA 4242") in drawn["english"]
    assert ("Plan", "5 GB, 7 days (pack_5gb_7d)") in drawn["english"]


async def test_a_pdf_is_asked_for_without_the_code_is_the_same_404(
    demo_app: Application, api: AsyncClient
) -> None:
    number = number_of(await paid(demo_app))
    response = await api.get(f"/api/v1/receipts/{number}", headers={"Accept": "application/pdf"})
    assert response.status_code == 404
    assert response.json()["code"] == "receipt_unknown"


async def test_a_refunded_renewals_receipt_says_when_it_was_refunded(
    demo_app: Application, api: AsyncClient
) -> None:
    view = await paid(demo_app, card=NETWORK_FAILURE_CARD, plan="reload_10")
    for _ in range(3):
        await work_once(demo_app.services)
    number = number_of(view)
    response = await api.get(
        f"/api/v1/receipts/{number}",
        params={"verification_code": verification_code(demo_app.services, number)},
    )
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["status"] == "refunded"
    assert receipt["refund"] is not None
    assert receipt["refund"]["amount_minor"] == receipt["amount_minor"]
    assert receipt["refund"]["refunded_at"] >= receipt["paid_at"]


# --- who may read a receipt, at the service level --------------------------------------------


async def test_staff_read_any_receipt_without_its_code(demo_app: Application) -> None:
    number = number_of(await paid(demo_app))
    receipt = await receipt_of(demo_app.services, STAFF, number)
    assert receipt.receipt_number == number
    with pytest.raises(NotFoundError) as caught:
        await receipt_of(demo_app.services, ANONYMOUS, number)
    assert caught.value.code == "receipt_unknown"


async def test_a_kiosk_key_is_not_staff_and_needs_the_code(demo_app: Application) -> None:
    number = number_of(await paid(demo_app))
    kiosk = Caller(kind=CallerKind.API_KEY, role=ApiKeyRole.KIOSK, api_key_id="kiosk")
    with pytest.raises(NotFoundError):
        await receipt_of(demo_app.services, kiosk, number)
    code = verification_code(demo_app.services, number)
    assert (await receipt_of(demo_app.services, kiosk, number, code)).receipt_number == number


async def test_the_cards_owner_reads_its_receipts_and_another_account_gets_404(
    demo_app: Application,
) -> None:
    services = demo_app.services
    view = await paid(demo_app)
    number = number_of(view)
    owner = await confirmed_account(
        services, email="owner@example.com", password="correct horse battery"
    )
    other = await confirmed_account(
        services, email="other@example.com", password="correct horse battery"
    )
    async with services.unit_of_work() as uow:
        await uow.accounts.link_card(owner.id, view.renewal.card_id, at=services.clock.now())
        await uow.commit()
    as_owner = Caller(kind=CallerKind.ACCOUNT, account_id=owner.id)
    as_other = Caller(kind=CallerKind.ACCOUNT, account_id=other.id)
    assert (await receipt_of(services, as_owner, number)).receipt_number == number
    with pytest.raises(NotFoundError) as caught:
        await receipt_of(services, as_other, number)
    assert caught.value.code == "receipt_unknown"


# --- e-mailing a receipt ---------------------------------------------------------------------


def memory_mailer(application: Application) -> MemoryMailer:
    mailer = application.services.mailer
    assert isinstance(mailer, MemoryMailer)
    return mailer


async def test_a_paid_renewals_receipt_is_emailed_in_the_payers_language(
    demo_app: Application,
) -> None:
    view = await paid(demo_app)
    number = number_of(view)
    sent = await send_receipt(demo_app.services, view.id, "Payer@Example.com", "ms")
    assert sent is True
    [mail] = memory_mailer(demo_app).sent
    assert mail.recipient == "payer@example.com"
    assert mail.subject == f"Resit anda {number}"
    assert number in mail.body
    assert verification_code(demo_app.services, number) in mail.body
    assert "+60 12-*** 6789" in mail.body
    assert "123456789" not in mail.body
    assert "MYR 10.00" in mail.body


async def test_an_unpaid_renewal_has_no_receipt_to_email(demo_app: Application) -> None:
    view = await paid(demo_app, payment=DECLINED_CARD)
    with pytest.raises(NotFoundError) as caught:
        await send_receipt(demo_app.services, view.id, "payer@example.com", "en")
    assert caught.value.code == "receipt_unknown"
    assert list(memory_mailer(demo_app).sent) == []


async def test_a_receipt_is_not_emailed_to_something_that_is_no_address(
    demo_app: Application,
) -> None:
    view = await paid(demo_app)
    for address in ("payer", "a@b@example.com", "a,b@example.com", "a@example.com\r\nBcc: x@y.z"):
        with pytest.raises(InputError) as caught:
            await send_receipt(demo_app.services, view.id, address, "en")
        assert caught.value.code == "email_invalid"
    assert list(memory_mailer(demo_app).sent) == []


async def test_a_mail_server_that_is_down_is_a_retryable_error(demo_app: Application) -> None:
    view = await paid(demo_app)
    memory_mailer(demo_app).failing = True
    with pytest.raises(TopupError) as caught:
        await send_receipt(demo_app.services, view.id, "payer@example.com", "en")
    assert caught.value.code == "mail_unavailable"
    assert caught.value.retryable is True


async def test_a_receipt_sent_later_arrives_without_the_caller_waiting_for_it(
    demo_app: Application,
) -> None:
    view = await paid(demo_app)
    assert send_receipt_later(demo_app.services, view.id, "payer@example.com", "zh_Hans") is True
    await mailings(demo_app.services).drain()
    [mail] = memory_mailer(demo_app).sent
    assert mail.subject == f"您的收据 {number_of(view)}"


async def test_a_receipt_sent_later_that_fails_is_logged_not_raised(
    demo_app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    view = await paid(demo_app)
    memory_mailer(demo_app).failing = True
    with caplog.at_level(logging.WARNING, logger="topup.receipts"):
        send_receipt_later(demo_app.services, view.id, "payer@example.com", "en")
        await mailings(demo_app.services).drain()
    assert "mail_unavailable" in caplog.text
