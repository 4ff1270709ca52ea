"""Forgot my number (R8) in a real browser: by receipt number and verification code, by
registered e-mail (the real SMTP server of the harness receives the numbers), with and without
JavaScript, in Chinese on a phone and in English on a desktop; axe on every page."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

ACTIVE_CARD = "012-345 6789"
FULL_NUMBER = "+60 12-345 6789"


def paid_renewal(live_site: Any, email: str | None = None) -> dict[str, Any]:
    """A renewal paid over the API (as a payer without an account), with its receipt."""
    with live_site.api() as api:
        token = api.post(
            "/sandbox/psp/v1/tokens",
            json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        ).json()["token"]
        body: dict[str, Any] = {
            "card_number": ACTIVE_CARD,
            "plan": "pack_5gb_7d",
            "payment": {"method": "credit_card", "token": token},
        }
        if email:
            body["email"] = email
        created = api.post(
            "/api/v1/renewals", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
        assert created.status_code == 201, created.text
        found: dict[str, Any] = created.json()
    assert found["receipt_number"] and found["verification_code"]
    return found


def recovery_mail(live_site: Any, address: str, timeout_s: float = 15.0) -> str:
    """The body of the e-mail to ``address`` that lists the card's full number (the receipt's
    e-mail, sent to the same address, masks it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for mail in live_site.mails(address):
            body = mail.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""
            if FULL_NUMBER in text:
                return str(text)
        time.sleep(0.1)
    raise AssertionError(f"no e-mail with the card's number to {address} within {timeout_s} s")


def test_a_receipt_number_and_its_code_show_the_card_number_in_chinese_on_a_phone(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    renewal = paid_renewal(live_site)
    page = new_page(locale="zh-CN", phone=True)
    page.goto("/")
    page.locator("header a[href='/recover']").click()
    page.wait_for_url("**/recover")
    assert page.locator("h1").inner_text() == "忘记上网卡号码了？"
    axe_check(page)
    screenshots(page, "ways-zh")

    page.get_by_role("link", name="使用收据").click()
    page.wait_for_url("**/recover/receipt")
    axe_check(page)
    screenshots(page, "receipt-form-zh")

    page.get_by_label("收据编号").fill(renewal["receipt_number"].lower())
    page.get_by_label("验证码").fill(renewal["verification_code"])
    page.get_by_role("button", name="显示上网卡号码").click()
    page.wait_for_load_state()
    assert page.locator("[data-card-number]").inner_text() == FULL_NUMBER
    axe_check(page)
    screenshots(page, "card-found-zh")


def test_a_wrong_code_is_summarised_focused_and_shown_beside_the_field(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    renewal = paid_renewal(live_site)
    page = new_page(locale="ms-MY")
    page.goto("/recover/receipt")
    page.get_by_label("Nombor resit").fill(renewal["receipt_number"])
    page.get_by_label("Kod pengesahan").fill("00000-00000")
    page.get_by_role("button", name="Tunjukkan nombor kad").click()
    page.wait_for_load_state()

    summary = page.locator("[data-error-summary]")
    assert "Kami tidak dapat menunjukkan resit ini" in summary.inner_text()
    assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
    assert page.locator("#receipt_number").get_attribute("aria-invalid") == "true"
    assert "6789" not in page.content()
    summary.get_by_role("link").first.click()
    assert page.evaluate("document.activeElement.id") == "receipt_number"
    axe_check(page)
    screenshots(page, "receipt-wrong-code-ms")


def test_the_card_numbers_arrive_by_email_through_smtp_and_the_page_says_the_same_for_anyone(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    address = f"aisyah-{uuid.uuid4().hex[:8]}@example.com"
    paid_renewal(live_site, email=address)
    page = new_page()
    page.goto("/recover")
    page.get_by_role("link", name="Send them to my e-mail").click()
    page.wait_for_url("**/recover/email")
    axe_check(page)
    screenshots(page, "email-form-en")

    page.get_by_label("E-mail address").fill(address.upper())
    page.get_by_role("button", name="Send my card numbers").click()
    page.wait_for_url("**/recover/email/sent")
    registered = page.locator("main").inner_text()
    assert address not in page.url and "%40" not in page.url
    axe_check(page)
    screenshots(page, "email-sent-en")

    assert "6789" in recovery_mail(live_site, address)

    page.goto("/recover/email")
    page.get_by_label("E-mail address").fill(f"nobody-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_role("button", name="Send my card numbers").click()
    page.wait_for_url("**/recover/email/sent")
    assert page.locator("main").inner_text() == registered


def test_recovery_works_with_javascript_off(
    live_site: Any, new_page: Any, screenshots: Any
) -> None:
    address = f"wei-{uuid.uuid4().hex[:8]}@example.com"
    renewal = paid_renewal(live_site, email=address)
    page = new_page(locale="id-ID", phone=True, javascript=False)
    page.goto("/recover/receipt")
    page.get_by_label("Nomor struk").fill(renewal["receipt_number"])
    page.get_by_label("Kode verifikasi").fill(renewal["verification_code"].replace("-", " "))
    page.get_by_role("button", name="Tampilkan nomor kartu").click()
    page.wait_for_load_state()
    assert page.locator("[data-card-number]").inner_text() == FULL_NUMBER
    screenshots(page, "card-found-no-js-id")

    page.goto("/recover/email")
    page.get_by_label("Alamat email").fill("bukan-alamat")
    page.get_by_role("button", name="Kirim nomor kartu saya").click()
    page.wait_for_load_state()
    assert re.search("tidak valid", page.locator("#email-error").inner_text())
    screenshots(page, "email-invalid-no-js-id")
    page.get_by_label("Alamat email").fill(address)
    page.get_by_role("button", name="Kirim nomor kartu saya").click()
    page.wait_for_url("**/recover/email/sent")
    recovery_mail(live_site, address)
    subjects = [str(mail["subject"]) for mail in live_site.mails(address)]
    assert "Nomor kartu yang terdaftar dengan alamat email ini" in subjects  # her language
