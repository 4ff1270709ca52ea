"""The installable app in a real browser: Chromium finds no installability error, the service
worker is active and controls the page, the offline page is shown offline, and no page (nor
anything but the shell) is kept in its cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGUMENTS, DESKTOP

CONTROL_WAIT_S = 15.0
CONTROLLED = "navigator.serviceWorker.controller !== null"
KEPT_URLS = """async () => {
  const urls = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) urls.push(new URL(request.url).pathname);
  }
  return urls;
}"""


def wait_for_control(page: Any) -> None:
    """Until the service worker controls the page (``wait_for_function`` evaluates a string,
    which the pages' policy forbids: ``evaluate`` is polled instead)."""
    deadline = time.monotonic() + CONTROL_WAIT_S
    while not page.evaluate(CONTROLLED):
        if time.monotonic() > deadline:
            raise AssertionError(f"no service worker controls {page.url}")
        page.wait_for_timeout(100)


def controlled_page(new_page: Any, **options: Any) -> Any:
    """A page of the site once the service worker is active and controls it."""
    page = new_page(**options)
    page.goto("/")
    wait_for_control(page)
    state = page.evaluate("navigator.serviceWorker.controller.state")
    assert state in {"activated", "activating"}
    return page


def test_chromium_finds_the_app_installable(
    browser: Any, live_site: Any, tmp_path: Path, screenshots: Any, axe_check: Any
) -> None:
    # A profile of its own: Chromium never offers to install from an incognito context, which
    # every new_context() is.
    context = browser.browser_type.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGUMENTS,
        headless=True,
        base_url=live_site.url,
        viewport=DESKTOP,
    )
    try:
        check_installable(context.new_page(), screenshots, axe_check)
    finally:
        context.close()


def check_installable(page: Any, screenshots: Any, axe_check: Any) -> None:
    page.goto("/")
    wait_for_control(page)
    session = page.context.new_cdp_session(page)

    manifest = session.send("Page.getAppManifest")
    assert manifest["errors"] == []
    assert manifest["url"].endswith("/manifest.webmanifest")
    errors = session.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert errors == []
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == page.url.split("#")[0].rstrip("/") + "/"
    axe_check(page)
    screenshots(page, "home-as-app")


def test_the_offline_page_is_shown_when_the_network_is_gone(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = controlled_page(new_page, locale="zh-CN", phone=True)
    page.goto("/help")  # a page seen online is not kept: offline it is the offline page too
    wait_for_control(page)
    page.context.set_offline(True)
    try:
        for path in ("/help", "/recover", "/"):
            page.goto(path)
            assert page.locator("h1").inner_text() == "您已离线", path
        assert page.evaluate("getComputedStyle(document.body).display") == "flex"  # CSS kept
        axe_check(page)
        screenshots(page, "offline-zh")
    finally:
        page.context.set_offline(False)
    page.goto("/help")
    assert page.locator("h1").inner_text() == "帮助"


def test_the_offline_page_follows_the_language_chosen(new_page: Any, screenshots: Any) -> None:
    page = controlled_page(new_page, locale="en-GB", phone=True)
    page.get_by_role("link", name="Bahasa Melayu").click()
    page.wait_for_load_state()
    page.wait_for_timeout(500)  # the worker fetches the offline page anew
    page.context.set_offline(True)
    try:
        page.goto("/help")
        assert page.locator("html").get_attribute("lang") == "ms"
        assert page.locator("h1").inner_text() == "Anda di luar talian"
        screenshots(page, "offline-ms")
    finally:
        page.context.set_offline(False)


def test_the_cache_keeps_the_shell_and_the_offline_page_and_no_other_page(
    new_page: Any,
) -> None:
    page = controlled_page(new_page)
    for path in ("/help", "/recover", "/recover/receipt", "/app"):
        page.goto(path)
    wait_for_control(page)

    kept = page.evaluate(KEPT_URLS)
    assert "/offline" in kept
    assert any(url == "/static/shared/base.css" for url in kept)
    assert all(url.startswith("/static/") or url == "/offline" for url in kept), kept


def test_opening_the_app_remembers_channel_app_in_an_http_only_cookie(new_page: Any) -> None:
    page = new_page(phone=True)
    page.goto("/app")

    assert page.url.endswith("/")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert cookies["topup_app"]["value"] == "1"
    assert cookies["topup_app"]["httpOnly"] is True
    assert page.evaluate("document.cookie").find("topup_app") == -1
