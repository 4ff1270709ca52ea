"""The help page over HTTP: activation time per method (from the methods' configuration and the
activation limits), every error of the catalogue in the visitor's language with its code, and
customer service's contacts."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from topup.adapters import messages
from topup.bootstrap import Application
from topup.entrypoints.site import create_site
from topup.entrypoints.web.portal.help_pages import (
    error_groups,
    first_capital,
    without_placeholders,
)
from topup.i18n import format_money
from topup.settings import LimitSettings


@pytest.fixture
async def site(demo_app: Application) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_site(demo_app), client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_help_page_lists_every_error_code_of_the_catalogue_once(
    site: httpx.AsyncClient,
) -> None:
    page = await site.get("/help")

    assert page.status_code == 200
    anchors = re.findall(r'id="error-([a-z0-9_]+)"', page.text)
    assert sorted(anchors) == sorted(entry.code for entry in messages.catalogue())


async def test_the_errors_are_shown_in_the_visitors_language_with_their_code(
    site: httpx.AsyncClient,
) -> None:
    chinese = await site.get("/help", headers={"accept-language": "zh-CN,zh;q=0.9"})
    site.cookies.set("topup_language", "id")
    indonesian = await site.get("/help")

    expired = messages.entry("card_expired")
    assert expired is not None
    assert without_placeholders(expired.text["zh_Hans"]) in chinese.text
    assert without_placeholders(expired.text["id"]) in indonesian.text
    assert without_placeholders(expired.text["en"]) not in chinese.text
    assert ">card_expired" in chinese.text
    assert "{method}" not in chinese.text and "{plan}" not in chinese.text


def test_the_codes_only_staff_meet_come_last() -> None:
    groups = error_groups("en")

    assert groups[-1].anchor == "staff" and groups[-1].for_staff
    assert not any(group.for_staff for group in groups[:-1])
    staff = {entry.code for entry in groups[-1].entries}
    assert {"port_in_use", "settlement_file_invalid", "api_key_not_found"} <= staff
    cards = next(group for group in groups if group.anchor == "cards")
    assert {"card_number_bad_check_digit", "card_expired"} <= {e.code for e in cards.entries}


async def test_activation_time_follows_the_limits_and_each_methods_configuration(
    make_app: object, database_url: str
) -> None:
    from topup.services.demo import load_demo

    limits = LimitSettings(activation_typical_delay_s=300, activation_late_after_s=7200)
    application = make_app(limits=limits)  # type: ignore[operator]
    await load_demo(application.services)
    transport = httpx.ASGITransport(app=create_site(application), client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/help")

    assert "usually active within 5 minutes" in page.text
    assert "still not active 2 hours after paying" in page.text
    shown = html.unescape(page.text)
    offered = application.services.methods.offered(channel="web", region=None)
    for method in offered:
        assert f'<th scope="row">{first_capital(method.name("en"))}</th>' in shown
    assert '<h3 id="kind-card">Credit card and debit card</h3>' in shown
    assert "approve it in the wallet's app, within 30 minutes" in shown
    wallet = next(method for method in offered if method.daily_max is not None)
    assert wallet.daily_max is not None
    assert "Per day and wallet account" in shown
    assert f"<td>{format_money(wallet.daily_max, 'en')}</td>" in shown
    assert "Not offered today: Alipay and WeChat Pay." in page.text


async def test_the_help_page_names_customer_service_and_the_ways_to_find_a_number(
    site: httpx.AsyncClient,
) -> None:
    page = await site.get("/help", headers={"accept-language": "ms"})

    assert 'href="tel:+60327000000"' in page.text
    assert 'href="mailto:help@topup.example"' in page.text
    assert "Setiap hari, 8 pagi hingga 10 malam" in page.text
    assert 'href="/recover"' in page.text
