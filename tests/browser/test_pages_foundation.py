"""The shared layer of the pages in a real browser: language chosen and remembered, the error
page, keyboard access to the language switch, no accessibility violation."""

from __future__ import annotations

from typing import Any


def test_the_home_page_speaks_the_browsers_language_and_remembers_a_switch(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="zh-CN", phone=True)
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert "续费" in page.locator("h1").inner_text()
    axe_check(page)
    screenshots(page, "home-zh")
    page.get_by_role("link", name="Bahasa Melayu").click()
    assert page.locator("html").get_attribute("lang") == "ms"
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "ms"  # remembered
    axe_check(page)


def test_a_page_that_does_not_exist_is_a_page_in_the_visitors_language(
    new_page: Any, screenshots: Any, axe_check: Any
) -> None:
    page = new_page(locale="id-ID")
    answer = page.goto("/no-such-page")
    assert answer is not None and answer.status == 404
    assert page.locator("h1").inner_text() == "Halaman tidak ditemukan"
    axe_check(page)
    screenshots(page, "not-found-id")


def test_the_skip_link_is_the_first_stop_of_the_keyboard(new_page: Any) -> None:
    page = new_page()
    page.goto("/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert "Skip to main content" in focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
