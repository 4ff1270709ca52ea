"""Auto-renewal in a real browser: a signed-in subscriber saves a payment card through the PSP's
tokeniser, turns auto-renewal on for a linked card (with a top-up rule) and sees the next charge's
date, amount and method; then turns it off. In English on a desktop and in Chinese on a phone,
each page checked by axe and photographed at phone and desktop sizes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveSite
from tests.browser.test_account import (
    CARD,
    _email,
    _link_card,
    _sign_in,
    _sign_up_and_confirm,
)


def _save_a_payment_card(page: Any) -> None:
    page.goto("/accounts/payment-cards")
    page.locator("#number").fill("4242 4242 4242 4242")
    page.locator("#expiry").fill("12/30")
    page.locator("#cvc").fill("123")
    page.locator("form[data-tokenise] button[type=submit]").click()
    page.wait_for_url("**/accounts/payment-cards?notice=saved")


@pytest.mark.parametrize(
    ("locale", "phone", "on_text", "next_charge"),
    [
        ("en-GB", False, "Auto-renewal is on.", "Next charge"),
        ("zh-CN", True, "自动续费已开启。", "下次扣款"),
    ],
)
def test_a_subscriber_turns_on_auto_renewal_with_a_saved_card_and_sees_the_next_charge(
    new_page: Any,
    live_site: LiveSite,
    screenshots: Any,
    axe_check: Any,
    locale: str,
    phone: bool,
    on_text: str,
    next_charge: str,
) -> None:
    page = new_page(locale=locale, phone=phone)
    email = _email()
    _sign_up_and_confirm(page, live_site, email)
    _sign_in(page, email)
    _link_card(page, live_site)
    _save_a_payment_card(page)

    page.goto("/accounts/cards")
    page.locator("a[href$='/auto-renewal']").first.click()
    page.wait_for_url("**/auto-renewal")
    axe_check(page)
    screenshots(page, "auto-renewal-off")
    page.locator("input[name=plan_code][value=pack_5gb_7d]").check()
    page.locator("input[name=payment]").first.check()  # the saved card
    page.locator("#top_up_on").check()
    page.locator("#top_up_below_mb").fill("500")
    page.locator("#top_up_month_count_max").fill("2")
    page.locator("form[action$='/auto-renewal'] button[type=submit]").click()
    page.wait_for_url("**/auto-renewal?notice=on")

    main = page.locator("main").inner_text()
    assert on_text in main
    assert next_charge in main
    assert "Visa 4242" in main
    assert "10.00" in main  # RM 10.00, pack_5gb_7d
    axe_check(page)
    screenshots(page, "auto-renewal-on")

    # A refused form says what is wrong beside the field.
    page.locator("#top_up_on").check()
    page.locator("#top_up_below_mb").fill("lots")
    page.locator("form[action$='/auto-renewal'] button[type=submit]").click()
    page.locator(".error-summary").wait_for()
    axe_check(page)
    screenshots(page, "auto-renewal-refused")

    page.locator("form[action$='/auto-renewal/off'] button[type=submit]").click()
    page.wait_for_url("**/auto-renewal?notice=off")
    assert page.locator("form[action$='/auto-renewal/off']").count() == 0
    screenshots(page, "auto-renewal-turned-off")

    # The card's timeline (empty of auto-renewal events so far: nothing was charged).
    page.goto("/accounts/cards")
    page.locator("a[href$='/timeline']").first.click()
    page.wait_for_url("**/timeline")
    assert page.locator("h1").inner_text()
    axe_check(page)
    screenshots(page, "card-timeline")


MANAGING = "Syarikat Maju Sdn Bhd"
ORGANISATION_ID = re.compile(r"organisation (\S+) \(")
POLICY_TIMEOUT_MS = 30_000
SANDBOX_PAYMENT_CARD = ("--card-number", "4242424242424242", "--expiry", "12/30", "--cvc", "123")


def _organisation_with_the_card(live_site: LiveSite, owner: str, tmp_path: Path) -> str:
    """An organisation (made by the operator) with the demo card and a payment card."""
    made = live_site.cli("organisations", "create", MANAGING, "--owner", owner, "--language", "en")
    assert made.returncode == 0, made.stdout + made.stderr
    found = ORGANISATION_ID.search(made.stdout)
    assert found is not None, made.stdout
    numbers = tmp_path / "numbers.txt"
    numbers.write_text(CARD + "\n")
    for command in (
        ("organisations", "add-cards", found.group(1), str(numbers)),
        ("organisations", "payment-card", found.group(1), *SANDBOX_PAYMENT_CARD),
    ):
        done = live_site.cli(*command)
        assert done.returncode == 0, done.stdout + done.stderr
    return found.group(1)


def _remove_from_the_fleet(page: Any, organisation: str) -> None:
    """The owner takes the card out again (the demo card is other tests' too)."""
    page.goto(f"/organisations/{organisation}/fleet")
    page.locator("a[href$='/remove']").first.click()
    page.locator("form[action$='/remove'] button[type=submit]").click()
    page.wait_for_url("**/fleet?notice=*")


def test_a_card_whose_auto_renewal_its_organisation_manages_says_who_and_whom_to_ask(
    new_page: Any, live_site: LiveSite, screenshots: Any, axe_check: Any, tmp_path: Path
) -> None:
    owner = new_page(locale="en-GB")
    owner_email = _email()
    _sign_up_and_confirm(owner, live_site, owner_email)
    _sign_in(owner, owner_email)
    organisation = _organisation_with_the_card(live_site, owner_email, tmp_path)
    try:
        # The organisation turns auto-renewal on for its cards (the worker applies it).
        owner.goto(f"/organisations/{organisation}/auto-renewal")
        owner.locator("#plan_one").select_option("pack_5gb_7d")
        owner.locator("form[action$='/auto-renewal'] button[type=submit]").click()
        owner.wait_for_url("**/auto-renewal?notice=policy_started")
        owner.get_by_text("Auto-renewal was turned on for 1 card.").wait_for(
            timeout=POLICY_TIMEOUT_MS
        )

        # The card's subscriber, in English on a desktop then in Chinese on a phone.
        for locale, phone, managed, ask in (
            ("en-GB", False, f"Managed by {MANAGING}", "ask an owner or admin"),
            ("zh-CN", True, f"由 {MANAGING} 管理", "请联系"),
        ):
            page = new_page(locale=locale, phone=phone)
            email = _email()
            _sign_up_and_confirm(page, live_site, email)
            _sign_in(page, email)
            _link_card(page, live_site)
            page.goto("/accounts/cards")
            page.locator("a[href$='/auto-renewal']").first.click()
            page.wait_for_url("**/auto-renewal")
            main = page.locator("main").inner_text()
            assert managed in main and ask in main
            assert page.locator("form[action$='/auto-renewal']").count() == 0  # not theirs
            axe_check(page)
            screenshots(page, f"managed-by-organisation-{locale}", large_phone=True)
    finally:
        _remove_from_the_fleet(owner, organisation)


@pytest.mark.parametrize(
    ("locale", "phone", "you_pay"),
    [("en-GB", False, "You pay for this auto-renewal"), ("zh-CN", True, "这项自动续费由您付款")],
)
def test_a_subscriber_turns_off_their_own_auto_renewal_of_a_card_that_joined_a_fleet(
    new_page: Any,
    live_site: LiveSite,
    screenshots: Any,
    axe_check: Any,
    tmp_path: Path,
    locale: str,
    phone: bool,
    you_pay: str,
) -> None:
    page = new_page(locale=locale, phone=phone)
    email = _email()
    _sign_up_and_confirm(page, live_site, email)
    _sign_in(page, email)
    _link_card(page, live_site)
    _save_a_payment_card(page)
    page.goto("/accounts/cards")
    page.locator("a[href$='/auto-renewal']").first.click()
    page.wait_for_url("**/auto-renewal")
    page.locator("input[name=plan_code][value=pack_5gb_7d]").check()
    page.locator("input[name=payment]").first.check()  # the saved card
    page.locator("form[action$='/auto-renewal'] button[type=submit]").click()
    page.wait_for_url("**/auto-renewal?notice=on")
    path = page.url.split("?", 1)[0]
    owner = new_page(locale="en-GB")
    owner_email = _email()
    _sign_up_and_confirm(owner, live_site, owner_email)
    _sign_in(owner, owner_email)
    organisation = _organisation_with_the_card(live_site, owner_email, tmp_path)
    try:
        page.goto(path)
        main = page.locator("main").inner_text()
        assert MANAGING in main and you_pay in main and "Visa 4242" in main
        assert page.locator("form[action$='/auto-renewal']").count() == 0  # the fleet's to set
        axe_check(page)
        screenshots(page, f"managed-by-organisation-paid-by-you-{locale}", large_phone=True)
        page.locator("form[action$='/auto-renewal/off'] button[type=submit]").click()
        page.wait_for_url("**/auto-renewal?notice=off")
        assert page.locator("form[action$='/auto-renewal/off']").count() == 0
        screenshots(page, f"managed-by-organisation-turned-off-{locale}")
    finally:
        _remove_from_the_fleet(owner, organisation)
