"""Journey 5 in a real browser: where is my renewal. The status page updates live through
activation, works with JavaScript off (it reloads itself), and the receipt is shown, printed as
PDF in the subscriber's language and e-mailed through the harness's real SMTP server."""

from __future__ import annotations

import io
import re
from typing import Any

from playwright.sync_api import expect
from pypdf import PdfReader

from tests.browser.status_renewals import hold_renewal, renew, renew_by_wallet

LIVE_TIMEOUT_MS = 20_000
NO_SCRIPT_TIMEOUT_MS = 30_000  # the page reloads itself every 5 s


def test_the_status_page_updates_live_through_activation_without_a_reload(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="en-GB")
    page.goto("/")
    created = renew(live_site)
    hold_renewal(page, live_site, created)
    page.goto(f"/renewals/{created['id']}")
    page.evaluate("window.stillThisPage = true")
    first = page.locator("h1").inner_text()
    if first.startswith("Paid"):  # usually: activation takes the sandbox network a second
        assert page.get_by_text("Expected by").is_visible()
        screenshots(page, "status-activating")
        axe_check(page)
    assert page.locator("[data-reference]").inner_text() == created["receipt_number"]
    expect(page.locator("h1")).to_have_text(re.compile("^Done"), timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.stillThisPage === true")
    assert page.get_by_text("Activated on the network").is_visible()
    axe_check(page)
    screenshots(page, "status-done")


def test_with_javascript_off_the_wallet_and_status_pages_reload_themselves_until_done(
    live_site: Any, new_page: Any, screenshots: Any
) -> None:
    created = renew_by_wallet(live_site, "0124449999")
    page = new_page(locale="en-GB", javascript=False)
    hold_renewal(page, live_site, created)
    page.goto(f"/renewals/{created['id']}")
    assert page.url.endswith("/wallet")
    # No axe here: the page reloads itself under it (axe checks these pages with JavaScript on).
    screenshots(page, "wallet-no-script")
    phone = new_page(locale="en-GB", phone=True)
    phone.goto(created["next_action"]["url"])
    phone.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(rf"/renewals/{created['id']}$"), timeout=NO_SCRIPT_TIMEOUT_MS)
    expect(page.locator("h1")).to_have_text(re.compile("^Done"), timeout=NO_SCRIPT_TIMEOUT_MS)
    screenshots(page, "status-no-script")
    page.get_by_role("link", name="View the receipt").click()
    receipt_number = page.locator(".receipt__number").inner_text()
    assert receipt_number.startswith("R-")
    page.get_by_label("E-mail address").fill("no-script@example.com")
    page.get_by_role("button", name="Send the receipt").click()
    assert page.get_by_text("The receipt is on its way").is_visible()
    assert "@" not in page.url
    mail = live_site.wait_for_mail("no-script@example.com")
    assert receipt_number in str(mail["subject"])


def test_the_receipt_pdf_is_in_the_subscribers_language(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    created = renew(live_site)
    page = new_page(locale="zh-CN", phone=True)
    hold_renewal(page, live_site, created)
    page.goto(f"/renewals/{created['id']}/receipt")
    assert page.locator("h1").inner_text() == "收据"
    assert created["receipt_number"] in page.locator("main").inner_text()
    axe_check(page)
    screenshots(page, "receipt-zh")
    with page.expect_download() as download:
        page.get_by_role("link", name="下载 PDF").click()
    document = download.value.path().read_bytes()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(document)).pages)
    text = text.replace("\x00", "")  # the CJK font's two-byte codes, as pypdf reads them
    assert "收据" in text and "验证码" in text
    assert created["receipt_number"] in text


def test_the_receipt_is_emailed_in_the_subscribers_language_through_smtp(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    created = renew(live_site)
    page = new_page(locale="ms-MY")
    hold_renewal(page, live_site, created)
    page.goto(f"/renewals/{created['id']}/receipt")
    page.get_by_role("button", name="Hantar resit").click()  # nothing typed: told beside the field
    summary = page.locator("[data-error-summary]")
    assert summary.is_visible()
    assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
    axe_check(page)
    screenshots(page, "receipt-email-error-ms")
    page.get_by_label("Alamat e-mel").fill("pelanggan@example.com")
    page.get_by_role("button", name="Hantar resit").click()
    assert page.get_by_role("status").first.is_visible()
    assert "pelanggan" not in page.url
    screenshots(page, "receipt-emailed-ms")
    mail = live_site.wait_for_mail("pelanggan@example.com")
    assert created["receipt_number"] in str(mail["subject"])
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and "Terima kasih" in body.get_content()
