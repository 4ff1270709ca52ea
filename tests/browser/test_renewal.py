"""Journeys 1, 2 and 4 in a real browser: renewing without an account, paying by card (the
tokeniser from the page, or the PSP's hosted page without JavaScript), the payment password,
and never paying twice (a double click, the network cut mid-payment)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import LiveSite

CARD = "+60 12-345 6789"
STATUS = re.compile(r"/renewals/[0-9a-f-]{36}$")
VERIFY = re.compile(r"/renewals/[0-9a-f-]{36}/verify$")


def renewals_of(live_site: LiveSite, card: str = CARD) -> list[str]:
    """The ids of the card's renewals (newest first), read with the CLI on the site's database."""
    done = live_site.cli("history", card, "--json", "--limit", "100")
    assert done.returncode == 0, done.stderr
    return [renewal["id"] for renewal in json.loads(done.stdout)["renewals"]]


def open_pay_page(
    page: Any, screenshots: Any, axe_check: Any, *, card: str = CARD, name: str = ""
) -> None:
    """Home -> card -> the first plan -> the first method (a credit card) -> its payment form,
    a screenshot and an axe check of each page (axe needs JavaScript: without it, the same
    pages are checked by the other tests)."""
    page.goto("/")
    axe_check(page)
    screenshots(page, f"{name}1-home")
    page.locator("#card_number").fill(card)
    page.locator("form[action='/renew'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/renew/[^/]+$"))
    axe_check(page)
    screenshots(page, f"{name}2-card")
    page.locator(".plan a.button").first.click()
    page.wait_for_url(re.compile(r"/renew/[^/]+/[a-z0-9_]+$"))
    axe_check(page)
    screenshots(page, f"{name}3-methods")
    page.locator("form[method=get] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/pay\?"))


def wait_for(page: Any, condition: Any, timeout_s: float = 15.0) -> None:
    """Wait, letting the browser's events (and routes) run, until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        page.wait_for_timeout(200)


def type_card(page: Any, number: str, expiry: str = "12/30", cvc: str = "123") -> None:
    page.locator("#card_number").fill(number)
    page.locator("#expiry").fill(expiry)
    page.locator("#cvc").fill(cvc)


def test_a_renewal_in_chinese_at_a_phone_viewport(
    new_page: Any, screenshots: Any, axe_check: Any, live_site: LiveSite
) -> None:
    before = renewals_of(live_site)
    page = new_page(locale="zh-CN", phone=True)
    open_pay_page(page, screenshots, axe_check, name="zh-")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert "付款" in page.locator("h1").inner_text()
    type_card(page, "4242 4242 4242 4242")
    assert page.locator("[data-card-brand]").inner_text() == "Visa"
    axe_check(page)
    screenshots(page, "zh-4-pay")
    page.locator("[data-pay-button]").click()
    page.wait_for_url(STATUS)
    screenshots(page, "zh-5-status")
    assert len(renewals_of(live_site)) == len(before) + 1


def test_the_fields_are_checked_as_they_are_typed(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="en-GB")
    open_pay_page(page, screenshots, axe_check, name="checks-")
    page.locator("#card_number").fill("4242 4242 4242 4241")  # complete, but a typo
    assert "typo" in page.locator("#card_number-error").inner_text()
    page.locator("#card_number").fill("3782 822463 10005")
    assert page.locator("[data-card-brand]").inner_text() == "American Express"
    assert page.locator("#card_number-error").is_hidden()
    page.locator("#cvc").fill("123")
    page.locator("#expiry").fill("13/30")
    page.locator("[data-pay-button]").click()  # refused on the page: nothing is sent
    summary = page.locator("[data-client-summary]")
    assert summary.is_visible()
    assert "4 digits" in page.locator("#cvc-error").inner_text()
    assert "01 to 12" in page.locator("#expiry-error").inner_text()
    assert page.evaluate("document.activeElement.hasAttribute('data-client-summary')")
    axe_check(page)
    screenshots(page, "checks-4-errors")


def test_a_declined_card_is_explained_in_malay(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="ms-MY", phone=True)
    open_pay_page(page, screenshots, axe_check, name="ms-")
    type_card(page, "4000 0000 0000 0002")
    page.locator("[data-pay-button]").click()
    page.wait_for_selector("[data-error-summary]")
    text = page.locator("main").inner_text()
    assert "Kad pembayaran anda ditolak" in text and "Tiada wang diambil" in text
    assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
    axe_check(page)
    screenshots(page, "ms-4-declined")


def test_an_international_card_is_refused_before_paying(
    new_page: Any, screenshots: Any, axe_check: Any, live_site: LiveSite
) -> None:
    before = renewals_of(live_site)
    page = new_page(locale="en-GB")
    open_pay_page(page, screenshots, axe_check, name="intl-")
    type_card(page, "4000 0099 9000 0104")
    page.locator("[data-pay-button]").click()
    page.wait_for_selector("[data-error-summary]")
    assert "does not allow international payments" in page.locator("main").inner_text()
    alternatives = page.locator("#alternatives")
    assert "Touch 'n Go eWallet" in alternatives.inner_text()
    page.locator("[data-error-summary] a[href='#alternatives']").click()
    axe_check(page)
    screenshots(page, "intl-4-refused")
    assert renewals_of(live_site) == before  # nothing recorded, nothing charged


def test_a_payment_password_is_asked_on_its_own_page(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="en-GB", phone=True)
    open_pay_page(page, screenshots, axe_check, name="password-")
    type_card(page, "4000 0000 0000 3220")
    page.locator("[data-pay-button]").click()
    page.wait_for_url(VERIFY)
    axe_check(page)
    screenshots(page, "password-4-verify")
    page.locator("#answer").fill("111111")
    page.locator("main form button[type=submit]").click()
    page.wait_for_selector("[data-error-summary]")
    assert "The payment password is wrong" in page.locator("main").inner_text()
    screenshots(page, "password-5-wrong")
    page.locator("#answer").fill("123456")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(STATUS)


def test_a_double_click_on_pay_makes_one_renewal(
    new_page: Any, screenshots: Any, axe_check: Any, live_site: LiveSite
) -> None:
    before = renewals_of(live_site)
    page = new_page(locale="en-GB")
    open_pay_page(page, screenshots, axe_check, name="double-")
    type_card(page, "5555 5555 5555 4444")
    page.locator("[data-pay-button]").dblclick()
    page.wait_for_url(STATUS)
    assert len(renewals_of(live_site)) == len(before) + 1
    landed = page.url
    page.go_back()  # the payment form again, and Pay again: the same renewal's status
    page.wait_for_url(re.compile(r"/pay\?"))
    type_card(page, "5555 5555 5555 4444")
    page.locator("[data-pay-button]").click()
    page.wait_for_url(STATUS)
    assert page.url == landed
    assert len(renewals_of(live_site)) == len(before) + 1


def test_the_network_cut_during_payment_and_pay_pressed_again_charges_once(
    new_page: Any, screenshots: Any, axe_check: Any, live_site: LiveSite
) -> None:
    before = renewals_of(live_site)
    page = new_page(locale="en-GB", phone=True)
    open_pay_page(page, screenshots, axe_check, name="offline-")
    type_card(page, "4242 4242 4242 4242")
    page.context.set_offline(True)  # the card details cannot reach the PSP
    page.locator("[data-pay-button]").click()
    problem = page.locator("[data-pay-problem]")
    problem.wait_for(state="visible")
    assert "could not reach the payment provider" in problem.inner_text()
    screenshots(page, "offline-4-offline")
    page.context.set_offline(False)
    page.wait_for_timeout(500)  # the connection is back

    # Then the payment reaches topup, but its answer is lost on the way back.
    def drop_the_answer(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        # topup receives the payment (as the browser sent it) and answers...
        headers = {**route.request.all_headers(), "sec-fetch-site": "same-origin"}
        route.fetch(headers=headers, max_redirects=0)
        with contextlib.suppress(PlaywrightError):  # (unless the browser gave up already)
            route.abort("internetdisconnected")  # ...but the answer never arrives

    page.route("**/pay*", drop_the_answer)
    with page.expect_request(lambda sent: sent.method == "POST" and "/pay" in sent.url):
        page.locator("[data-pay-button]").click()
    wait_for(page, lambda: len(renewals_of(live_site)) == len(before) + 1)  # it was paid
    page.unroute("**/pay*")
    if not re.search(r"/pay\?", page.url):  # the browser's "no connection" page
        page.go_back()
    page.wait_for_url(re.compile(r"/pay\?"))
    type_card(page, "4242 4242 4242 4242")
    page.locator("[data-pay-button]").click()  # Pay pressed again
    page.wait_for_url(STATUS)
    screenshots(page, "offline-5-status")
    assert len(renewals_of(live_site)) == len(before) + 1  # one renewal, one charge


def test_a_keyboard_only_renewal(new_page: Any, live_site: LiveSite) -> None:
    before = renewals_of(live_site)
    page = new_page(locale="en-GB")
    page.goto("/")

    def tab_to(selector: str, presses_max: int = 40) -> None:
        for _ in range(presses_max):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#card_number")
    page.keyboard.type(CARD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/renew/[^/]+$"))
    tab_to(".plan a.button")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/renew/[^/]+/[a-z0-9_]+$"))
    tab_to("input[type=radio]:checked")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/pay\?"))
    tab_to("#card_number")
    page.keyboard.type("4242424242424242")
    tab_to("#expiry")
    page.keyboard.type("12/30")
    tab_to("#cvc")
    page.keyboard.type("123")
    page.keyboard.press("Enter")
    page.wait_for_url(STATUS)
    assert len(renewals_of(live_site)) == len(before) + 1


def test_the_card_journey_with_javascript_disabled_uses_the_psps_hosted_page(
    new_page: Any, screenshots: Any, axe_check: Any, live_site: LiveSite
) -> None:
    before = renewals_of(live_site)
    page = new_page(locale="id-ID", javascript=False)
    open_pay_page(page, screenshots, lambda page: None, name="nojs-")
    assert page.locator("#card_number").count() == 1
    assert page.locator("[data-card-fields]").is_hidden()
    screenshots(page, "nojs-4-pay")
    page.locator("[data-pay-button]").click()
    page.wait_for_url(re.compile(r"/sandbox/psp/checkout\?"))
    screenshots(page, "nojs-5-hosted")
    page.locator("#card_number").fill("4242 4242 4242 4241")
    page.locator("#expiry").fill("12/30")
    page.locator("#cvc").fill("123")
    page.locator("main form button[type=submit]").click()
    assert page.locator("#card_number-error").is_visible()  # the same checks, on its page
    screenshots(page, "nojs-6-hosted-error")
    page.locator("#card_number").fill("4242 4242 4242 4242")
    page.locator("#cvc").fill("123")
    page.locator("main form button[type=submit]").click()
    screenshots(page, "nojs-7-accepted")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(STATUS)
    assert len(renewals_of(live_site)) == len(before) + 1


# The table both the page's script and the server judge (domain/payment_card.py decides).
CASES = [
    ("4242424242424242", "12/30", "123"),
    ("4242 4242 4242 4241", "12/30", "123"),
    ("4242-4242-4242-4242", "1230", "12"),
    ("４２４２４２４２４２４２４２４２", "12/2030", "１２３"),
    ("", "", ""),
    ("4242 4242 4242 424x", "00/30", "12a"),
    ("378282246310005", "11/26", "123"),
    ("378282246310005", "12/26", "1234"),
    ("5555555555554444", "13/30", "123"),
    ("5555 5555 5555 444", "12/99", "123"),
    ("4000056655665556", "12/1999", "123"),
    ("6200000000000005", "1/27", "123"),
    ("62000000000000054", "01/2047", "123"),
    ("601111111111111", "12/47", "1234"),
    ("1234567890123", "12/", "123"),
    ("3566002020360505", "12 / 30", " 123 "),
]


@pytest.mark.parametrize("javascript", [True])
def test_the_pages_script_and_the_server_agree_on_every_check(
    new_page: Any, screenshots: Any, axe_check: Any, javascript: bool
) -> None:
    import datetime as dt

    from topup.domain.payment_card import (
        UNKNOWN_CARD_FACTS,
        PaymentCardDetailsInvalid,
        check_card_details,
        normalize_card_number,
    )
    from topup.entrypoints.web.sandbox.psp import parse_expiry
    from topup.ports import PaymentCardDetails

    today = dt.date(2026, 11, 25)
    page = new_page(locale="en-GB", javascript=javascript)
    open_pay_page(page, screenshots, axe_check, name="agree-")
    for number, expiry, cvc in CASES:
        month, year = parse_expiry(expiry)
        details = PaymentCardDetails(normalize_card_number(number), month, year, cvc)
        server = {"card_number": None, "expiry": None, "cvc": None}
        try:
            check_card_details(
                details,
                today=today,
                holder_name_required=False,
                holder_name=None,
                facts=UNKNOWN_CARD_FACTS,
            )
        except PaymentCardDetailsInvalid as error:
            for problem in error.problems:
                server[problem.field.removeprefix("payment.")] = problem.code  # type: ignore[union-attr]
        script = page.evaluate(
            """([number, expiry, cvc]) => {
                const found = window.topupPaymentCard.check(number, expiry, cvc, {year: 2026, month: 11});
                const code = (item) => item ? item.code : null;
                return {card_number: code(found.card_number), expiry: code(found.expiry), cvc: code(found.cvc)};
            }""",
            [number, expiry, cvc],
        )
        assert script == server, (number, expiry, cvc)


def test_the_psps_hosted_page_is_accessible_in_every_state(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="zh-CN", phone=True)
    page.goto("/sandbox/psp/checkout?return_to=/&amount_minor=1000&currency=MYR")
    axe_check(page)
    screenshots(page, "hosted-1-form")
    page.locator("#card_number").fill("4242")
    page.locator("main form button[type=submit]").click()
    page.wait_for_selector("[data-error-summary]")
    axe_check(page)
    screenshots(page, "hosted-2-errors")
    page.locator("#card_number").fill("4242424242424242")
    page.locator("#expiry").fill("12/30")
    page.locator("#cvc").fill("123")
    page.locator("main form button[type=submit]").click()
    page.wait_for_selector("input[name=payment_token]", state="attached")
    axe_check(page)
    screenshots(page, "hosted-3-accepted")
