"""Journey 7 in a real browser: sign up, confirm from the link in the mail the SMTP server got,
sign in, link a card by the code the sandbox SMS sent, see it in "my cards", the history and
the receipts (each linking to its renewal's receipt page), save a payment card through the
PSP's tokeniser and renew in one tap; and the account's journeys with JavaScript off. Each page
is checked by axe and photographed at phone and desktop sizes."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from tests.browser.conftest import LiveSite

CARD = "+60123456789"  # demo: prepaid, active
CARD_TYPED = "012-345 6789"
PASSWORD = "correct horse battery"
LINK = re.compile(r"https?://\S+/accounts/\S+token=[A-Za-z0-9_\-]+")
CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


def _email() -> str:
    return f"subscriber-{uuid.uuid4().hex[:10]}@example.com"


def _link_in_mail(live_site: LiveSite, to: str, count: int = 1) -> str:
    message = live_site.wait_for_mail(to, count=count)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found is not None, body.get_content()
    return found.group()


def _sign_up_and_confirm(page: Any, live_site: LiveSite, email: str, shots: Any = None) -> None:
    page.goto("/accounts/sign-up")
    if shots:
        shots(page, "sign-up")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("form[action='/accounts/sign-up'] button[type=submit]").click()
    page.wait_for_url("**/accounts/sign-up")
    if shots:
        shots(page, "check-email")
    link = urlsplit(_link_in_mail(live_site, email))
    page.goto(f"{link.path}?{link.query}")
    assert "token=" not in page.url  # taken out of the address bar at once
    if shots:
        shots(page, "confirm")
    page.locator("form[action='/accounts/confirm'] button[type=submit]").click()
    page.wait_for_url("**/accounts/sign-in?notice=confirmed")


def _sign_in(page: Any, email: str) -> None:
    if "/accounts/sign-in" not in page.url:
        page.goto("/accounts/sign-in")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("form[action='/accounts/sign-in'] button[type=submit]").click()
    page.wait_for_url("**/accounts/cards")


def _link_card(page: Any, live_site: LiveSite, shots: Any = None) -> None:
    page.goto("/accounts/cards/link")
    page.locator("#card_number").fill(CARD_TYPED)
    if shots:
        shots(page, "link-a-card")
    before = len([sms for sms in live_site.sms() if sms.get("msisdn") == CARD])
    page.locator("form[action='/accounts/cards/link'] button[type=submit]").click()
    page.locator("#code").wait_for()
    sent = [sms for sms in live_site.sms() if sms.get("msisdn") == CARD]
    assert len(sent) > before
    code = CODE.search(sent[-1]["text"])
    assert code is not None
    page.locator("#code").fill(code.group())
    if shots:
        shots(page, "link-code")
    page.locator("form[action='/accounts/cards/link/verify'] button[type=submit]").click()
    page.wait_for_url("**/accounts/cards?notice=linked")


def _renewal_of_the_card(live_site: LiveSite) -> None:
    renewed = live_site.cli(
        "renew",
        CARD,
        "pack_5gb_7d",
        "--card-number",
        "4242424242424242",
        "--expiry",
        "12/30",
        "--cvc",
        "123",
    )
    assert renewed.returncode == 0, renewed.stderr


def test_sign_up_link_a_card_see_its_history_and_receipt_in_chinese_on_a_phone(
    new_page: Any, live_site: LiveSite, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="zh-CN", phone=True)
    email = _email()

    def shots(at: Any, name: str) -> None:
        axe_check(at)
        screenshots(at, name)

    _sign_up_and_confirm(page, live_site, email, shots)
    shots(page, "sign-in")
    _sign_in(page, email)
    _link_card(page, live_site, shots)
    assert "+60 12-345 6789" in page.locator("main").inner_text()
    assert page.locator("meter.data-bar").count() == 1
    shots(page, "my-cards")
    _renewal_of_the_card(live_site)
    page.get_by_role("link", name="记录").first.click()
    page.wait_for_url("**/accounts/history")
    receipt = page.locator("a[href$='/receipt']").first
    assert receipt.get_attribute("href", timeout=5_000)
    shots(page, "history")
    page.goto("/accounts/receipts")
    shots(page, "receipts")
    href = page.locator("a[href$='/receipt']").first.get_attribute("href")
    answer = page.goto(href)
    assert answer is not None and answer.status == 200  # the owner of the card may read it
    axe_check(page)
    screenshots(page, "receipt")
    pdf = page.locator("a[href$='/receipt.pdf']").first.get_attribute("href")
    document = page.request.get(pdf)
    assert document.status == 200
    assert document.headers["content-type"] == "application/pdf"
    assert document.body().startswith(b"%PDF")


def test_a_payment_card_saved_through_the_tokeniser_renews_a_card_in_one_tap(
    new_page: Any, live_site: LiveSite, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="ms-MY")
    email = _email()
    _sign_up_and_confirm(page, live_site, email)
    page.locator("#email").fill(email)
    page.locator("#password").fill("not the password")
    page.locator("form[action='/accounts/sign-in'] button[type=submit]").click()
    page.locator(".error-summary").wait_for()
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    axe_check(page)
    screenshots(page, "sign-in-refused")
    _sign_in(page, email)
    _link_card(page, live_site)
    page.goto("/accounts/payment-cards")
    page.locator("#number").fill("4242 4242 4242 4242")
    page.locator("#expiry").fill("12/30")
    page.locator("#cvc").fill("123")
    axe_check(page)
    screenshots(page, "payment-cards-form")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.post_data or ""))
    page.locator("form[data-tokenise] button[type=submit]").click()
    page.wait_for_url("**/accounts/payment-cards?notice=saved")
    to_us = [body for body in requests if "csrf_token" in body]
    assert to_us and all("4242424242424242" not in body for body in to_us)
    assert "4242" in page.locator(".saved-card").first.inner_text()
    axe_check(page)
    screenshots(page, "payment-card-saved")
    page.goto("/accounts/cards")
    page.locator("a[href$='/renew']").first.click()
    page.wait_for_url("**/renew")
    axe_check(page)
    screenshots(page, "one-tap-renewal")
    page.locator("form[action$='/renew'] button[type=submit]").dblclick()
    page.wait_for_url(re.compile(r".*/renewals/[^/]+$"))


def test_the_account_journeys_work_with_javascript_off(
    new_page: Any, live_site: LiveSite, screenshots: Any
) -> None:
    """(axe cannot run in a page without JavaScript: the same pages are checked with it on.)"""
    page = new_page(locale="en-GB", javascript=False)
    email = _email()
    _sign_up_and_confirm(page, live_site, email)
    page.goto("/accounts/sign-in")
    page.locator("#email").fill(email)
    page.locator("#password").fill("not the password")
    page.locator("form[action='/accounts/sign-in'] button[type=submit]").click()
    assert page.locator(".error-summary").is_visible()
    screenshots(page, "sign-in-refused")
    _sign_in(page, email)
    _link_card(page, live_site)
    for path, name in (
        ("/accounts/cards", "my-cards"),
        ("/accounts/history", "history"),
        ("/accounts/receipts", "receipts"),
        ("/accounts/payment-cards", "payment-cards"),
    ):
        page.goto(path)
        screenshots(page, f"{name}-no-script")
    page.goto("/accounts/password-reset")
    page.locator("#email").fill(email)
    page.locator("form[action='/accounts/password-reset'] button[type=submit]").click()
    link = urlsplit(_link_in_mail(live_site, email, count=2))
    page.goto(f"{link.path}?{link.query}")
    page.wait_for_url("**/accounts/password-reset/new")
    screenshots(page, "new-password")
    page.locator("#password").fill("another good passphrase")
    page.locator("form[action='/accounts/password-reset/new'] button[type=submit]").click()
    page.wait_for_url("**/accounts/sign-in?notice=password_set")
    assert page.goto("/accounts/cards") is not None
    assert "/accounts/sign-in" in page.url  # the reset signed every session out
    page.locator("#email").fill(email)
    page.locator("#password").fill("another good passphrase")
    page.locator("form[action='/accounts/sign-in'] button[type=submit]").click()
    page.wait_for_url("**/accounts/cards")
    page.get_by_role("link", name="Sign out").click()
    page.locator("form[action='/accounts/sign-out'] button[type=submit]").click()
    page.wait_for_url("**/accounts/sign-in?notice=signed_out")
    screenshots(page, "signed-out")
