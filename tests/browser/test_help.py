"""The help page in a real browser: activation times per method, every error message in the
visitor's language with its code (a filter with JavaScript, the whole list without), customer
service; axe in every language."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(
    ("locale", "heading", "phone"),
    [("zh-CN", "帮助", True), ("en-GB", "Help", False), ("ms-MY", "Bantuan", True),
     ("id-ID", "Bantuan", False)],
)  # fmt: skip
def test_the_help_page_reads_well_in_every_language(
    new_page: Any, screenshots: Any, axe_check: Any, locale: str, heading: str, phone: bool
) -> None:
    page = new_page(locale=locale, phone=phone)
    page.goto("/")
    page.locator("header a[href='/help']").click()
    page.wait_for_url("**/help")

    assert page.locator("h1").inner_text() == heading
    assert not page.locator("#error-card_expired").is_visible()  # groups are folded
    page.locator("#errors-cards > summary").click()
    assert page.locator("#error-card_expired").is_visible()
    assert page.locator("a[href^='tel:']").count() == 1
    axe_check(page)
    screenshots(page, f"help-{locale}")


def test_the_filter_finds_an_error_by_its_code_or_its_words(
    new_page: Any, screenshots: Any
) -> None:
    page = new_page(locale="zh-CN", phone=True)
    page.goto("/help")
    entries = page.locator("[data-errors-entry]")
    everything = entries.count()

    page.get_by_label("查找提示或代码").fill("card_expired")
    visible = [entry for entry in entries.all() if entry.is_visible()]
    assert [entry.get_attribute("id") for entry in visible] == [
        "error-card_expired",
        "error-payment_card_expired",
    ]
    screenshots(page, "help-filtered-zh")

    page.get_by_label("查找提示或代码").fill("zzzz-nothing")
    assert page.locator("[data-errors-count]").inner_text() == "没有匹配的提示。"
    page.get_by_label("查找提示或代码").fill("")
    assert not any(entry.is_visible() for entry in entries.all())  # folded again
    assert everything == len(entries.all())


def test_without_javascript_every_error_is_listed_and_the_filter_is_not_offered(
    new_page: Any, screenshots: Any
) -> None:
    page = new_page(locale="en-GB", javascript=False)
    page.goto("/help#error-ewallet_daily_limit_reached")

    assert not page.locator("[data-errors-filter]").is_visible()
    assert page.locator("#error-ewallet_daily_limit_reached").is_visible()  # its group unfolded
    page.locator("#errors-staff > summary").click()
    assert page.locator("#error-port_in_use").is_visible()
    screenshots(page, "help-no-js-en")
