"""Journey 3 in a real browser: paying by e-wallet. On a phone the payer opens the wallet's
approval page from the waiting page, approves, and comes back to the status page; on a desktop
the waiting page shows a QR code, the approval is made on another device, and the waiting page
moves on to the status page by itself."""

from __future__ import annotations

import re
from typing import Any

import segno
from playwright.sync_api import expect

from tests.browser.status_renewals import hold_renewal, renew_by_wallet

LIVE_TIMEOUT_MS = 20_000


def test_on_a_phone_the_payer_approves_in_the_wallet_and_comes_back_to_the_paid_status(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    created = renew_by_wallet(live_site, "0121119999")
    page = new_page(locale="zh-CN", phone=True)
    hold_renewal(page, live_site, created)
    page.goto(f"/renewals/{created['id']}")  # the status page sends a waiting payer on
    assert page.url.endswith(f"/renewals/{created['id']}/wallet")
    assert page.locator("h1").inner_text() == "请在电子钱包中确认付款"
    axe_check(page)
    screenshots(page, "wallet-waiting-zh")

    page.get_by_role("link", name="打开电子钱包确认付款").click()
    page.wait_for_url(re.compile(r"/sandbox/wallet/"))
    assert "确认这笔付款吗？" in page.locator("h1").inner_text()
    axe_check(page)
    screenshots(page, "sandbox-wallet-zh")

    page.get_by_role("button", name="确认付款").click()
    page.wait_for_url(re.compile(rf"/renewals/{created['id']}$"))
    heading = page.locator("h1")
    assert heading.inner_text() in {"已付款：续费正在生效中", "完成：续费已生效"}
    expect(page.locator("h1")).to_contain_text("完成", timeout=LIVE_TIMEOUT_MS)
    axe_check(page)
    screenshots(page, "status-done-zh")


def test_a_renewal_paid_by_e_wallet_from_the_home_page_on_a_phone_in_chinese(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    """The whole journey: the checkout sends the payer to the wallet's waiting page, the
    wallet's page sends them back to the status page, paid once."""
    page = new_page(locale="zh-CN", phone=True)
    page.goto("/")
    page.get_by_label("卡号").fill("012-345 6789")
    page.get_by_role("button", name="继续").click()
    page.get_by_role("link", name="选择此套餐").first.click()
    page.get_by_label("Touch 'n Go 电子钱包").check()
    page.get_by_role("button", name="继续").click()
    page.get_by_label(re.compile("注册的手机号码")).fill("012-555 9999")
    page.get_by_role("button", name=re.compile("^支付")).click()
    page.wait_for_url(re.compile(r"/renewals/[0-9a-f-]{36}/wallet$"))
    renewal_path = page.url.removesuffix("/wallet")
    axe_check(page)
    screenshots(page, "checkout-wallet-waiting-zh")
    page.get_by_role("link", name="打开电子钱包确认付款").click()
    page.get_by_role("button", name="确认付款").click()
    page.wait_for_url(renewal_path)
    expect(page.locator("h1")).to_contain_text("完成", timeout=LIVE_TIMEOUT_MS)
    page.go_back()  # Back to the wallet's page, then to the waiting page: still paid once
    page.goto(renewal_path + "/wallet")
    assert page.url == renewal_path  # nothing to wait for: the status page
    assert page.locator(".timeline__step--activating").count() == 1
    screenshots(page, "checkout-status-done-zh")


def test_on_a_desktop_the_qr_code_is_scanned_and_the_waiting_page_moves_on_by_itself(
    live_site: Any, new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    created = renew_by_wallet(live_site, "0122229999")
    desktop = new_page(locale="en-GB")
    hold_renewal(desktop, live_site, created)
    desktop.goto(f"/renewals/{created['id']}/wallet")
    svg = desktop.locator(".wallet__qr svg")
    assert svg.is_visible()
    # The QR code is the wallet's approval address: the same code drawn from that address.
    address = created["next_action"]["url"]
    expected = segno.make(address, error="m").svg_inline(
        scale=5, border=4, light="#fff", omitsize=True
    )
    assert _modules(svg.evaluate("node => node.outerHTML")) == _modules(expected)
    axe_check(desktop)
    screenshots(desktop, "wallet-qr-desktop")
    desktop.evaluate("window.stillThisPage = true")

    phone = new_page(locale="en-GB", phone=True)  # another device: no cookie of the renewal
    phone.goto(address)
    phone.get_by_role("button", name="Approve").click()
    assert "moves on by itself" in phone.locator("main").inner_text()
    axe_check(phone)
    screenshots(phone, "sandbox-wallet-approved")

    desktop.wait_for_url(re.compile(rf"/renewals/{created['id']}$"), timeout=LIVE_TIMEOUT_MS)
    desktop.evaluate("window.stillThisPage = true")
    expect(desktop.locator("h1")).to_have_text(re.compile("^Done"), timeout=LIVE_TIMEOUT_MS)
    assert desktop.evaluate("window.stillThisPage === true")  # updated live, not reloaded
    axe_check(desktop)
    screenshots(desktop, "status-after-qr")


def test_refusing_in_the_wallet_tells_the_payer_that_nothing_was_taken(
    live_site: Any, new_page: Any, screenshots: Any
) -> None:
    created = renew_by_wallet(live_site, "0123339999")
    page = new_page(locale="ms-MY", phone=True)
    hold_renewal(page, live_site, created)
    page.goto(f"/renewals/{created['id']}/wallet")
    page.get_by_role("link", name="Buka e-dompet untuk meluluskan").click()
    page.get_by_role("button", name="Tolak").click()
    page.wait_for_url(re.compile(rf"/renewals/{created['id']}$"))
    assert page.locator("h1").inner_text() == "Pembayaran tidak diambil"
    screenshots(page, "status-refused-ms")


def _modules(svg: str) -> list[str]:
    """The drawn modules of a segno SVG (its paths), whatever the colours and title."""
    found = re.findall(r'\sd="([^"]+)"', svg)
    assert found, svg[:300]
    return found
