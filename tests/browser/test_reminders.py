"""Reminders in a real browser: the reminder e-mail the worker sent (a demo card whose active
period ended gets "entered grace"), read from the SMTP server, its unsubscribe link opened in
Chromium without signing in, the button pressed, and the card's e-mails off; in English and in
Chinese, at phone and desktop sizes, with JavaScript and without; and the account's reminders
page, where a signed-in subscriber ticks channels per card."""

from __future__ import annotations

import re
import sqlite3
from typing import Any
from urllib.parse import urlsplit

from tests.browser.conftest import LiveSite
from tests.browser.test_account import _email, _link_card, _sign_in, _sign_up_and_confirm

GRACE_CARD_EMAIL = "weiming@example.com"  # demo: +60 12-345 0001, its active period ended
UNSUBSCRIBE = re.compile(r"https?://\S+/reminders/unsubscribe\?token=[A-Za-z0-9.\-]+")


def _reminder_mail(live_site: LiveSite) -> Any:
    message = live_site.wait_for_mail(GRACE_CARD_EMAIL, timeout_s=60)
    assert "active period of +60 12-345 0001 has ended" in message["Subject"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/api/v1/reminders/unsubscribe?token=" in message["List-Unsubscribe"]
    return message


def _preferences(live_site: LiveSite, msisdn: str) -> list[tuple[str, int]]:
    with sqlite3.connect(live_site.folder / "topup.sqlite3") as database:
        return list(
            database.execute(
                "SELECT channel, enabled FROM reminder_preferences JOIN cards ON cards.id = "
                "reminder_preferences.card_id WHERE cards.msisdn = ? ORDER BY 1",
                (msisdn,),
            )
        )


def test_unsubscribing_from_a_reminder_e_mails_link(
    live_site: LiveSite, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    message = _reminder_mail(live_site)
    body = message.get_body(preferencelist=("plain",)).get_content()
    found = UNSUBSCRIBE.search(body)
    assert found is not None, body
    link = urlsplit(found.group())
    page = new_page(locale="en-GB", phone=True, javascript=False)
    page.goto(f"{link.path}?{link.query}")
    assert page.locator("h1").inner_text() == "Stop reminder e-mails"
    assert "+60 12-345 0001" in page.locator(".lead").inner_text()
    screenshots(page, "unsubscribe-en")  # (axe needs JavaScript: it checks the pages below)
    page.get_by_role("button", name="Unsubscribe from these e-mails").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "You are unsubscribed"
    assert (
        "no more reminder e-mails about +60 12-345 0001"
        in page.locator("[role=status]").inner_text()
    )
    screenshots(page, "unsubscribed-en")
    assert _preferences(live_site, "+60123450001") == [("email", 0)]
    # The same link in Chinese, with JavaScript: it says the e-mails are off already.
    chinese = new_page(locale="zh-CN")
    chinese.goto(f"{link.path}?{link.query}")
    assert chinese.locator("h1").inner_text() == "停止接收提醒邮件"
    assert "这些邮件已经关闭" in chinese.locator("main").inner_text()
    axe_check(chinese)
    screenshots(chinese, "unsubscribe-zh")
    chinese.get_by_role("button", name="退订这些邮件").click()
    chinese.wait_for_load_state()
    assert chinese.locator("h1").inner_text() == "您已退订"
    axe_check(chinese)
    screenshots(chinese, "unsubscribed-zh")
    assert _preferences(live_site, "+60123450001") == [("email", 0)]
    # A link cut short does not work, and says what to do.
    broken = new_page(locale="en-GB")
    broken.goto(f"{link.path}?{link.query[:-3]}")
    assert broken.locator("h1").inner_text() == "This link does not work"


def test_a_signed_in_subscriber_chooses_channels_per_card(
    live_site: LiveSite, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    email = _email()
    page = new_page(locale="zh-CN", phone=True)
    _sign_up_and_confirm(page, live_site, email)
    _sign_in(page, email)
    page.goto("/accounts/reminders")
    assert page.locator("h1").inner_text() == "提醒"
    assert "将上网卡关联到您的账户后" in page.locator("main").inner_text()
    _link_card(page, live_site)
    page.goto("/accounts/reminders")
    boxes = page.locator("input[type=checkbox][name=on]")
    assert boxes.count() == 3 and all(boxes.nth(i).is_checked() for i in range(3))
    axe_check(page)
    screenshots(page, "reminders-zh")
    page.get_by_label("发送短信到此号码").uncheck()
    page.get_by_role("button", name="保存提醒设置").click()
    page.wait_for_url("**/accounts/reminders?notice=saved")
    assert "您的提醒设置已保存" in page.locator(".notice--ok").inner_text()
    assert not page.get_by_label("发送短信到此号码").is_checked()
    assert ("sms", 0) in _preferences(live_site, "+60123456789")
    screenshots(page, "reminders-zh-saved")
    desktop = new_page(locale="en-GB")
    _sign_in(desktop, email)
    desktop.goto("/accounts/reminders")
    assert desktop.locator("[data-push-on]").is_visible()  # the script shows the push button
    axe_check(desktop)
    screenshots(desktop, "reminders-en")
