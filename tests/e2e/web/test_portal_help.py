"""The help page over HTTP: activation time per method (from the methods' configuration and the
activation limits), every error of the catalogue in the visitor's language with its code, and
customer service's contacts."""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import replace

import httpx

from tests.unit.fakes import on_fakes
from topup.adapters import messages
from topup.domain.methods import MethodKind
from topup.entrypoints.site import create_site
from topup.entrypoints.web.portal.help_pages import (
    activation_help,
    error_groups,
    first_capital,
    without_placeholders,
)
from topup.i18n import format_money
from topup.settings import LimitSettings


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

    assert "Usually within 5 minutes of the payment" in page.text
    assert "Not active 2 hours after paying? Contact customer service." in page.text
    shown = html.unescape(page.text)
    offered = application.services.methods.offered(channel="web", region=None)
    for method in offered:
        assert f'<th scope="row">{first_capital(method.name("en"))}</th>' in shown
    assert '<h3 id="methods-1">Credit card and debit card</h3>' in shown
    assert "approve it in the wallet's app, within 30 minutes" in shown
    wallet = next(method for method in offered if method.daily_max is not None)
    assert wallet.daily_max is not None
    assert "Per day and wallet account" in shown
    assert f">{format_money(wallet.daily_max, 'en')}</td>" in shown
    assert "Not offered today: Alipay and WeChat Pay." in page.text


async def test_the_help_page_names_customer_service_and_the_ways_to_find_a_number(
    site: httpx.AsyncClient,
) -> None:
    page = await site.get("/help", headers={"accept-language": "ms"})

    assert 'href="tel:+60327000000"' in page.text
    assert 'href="mailto:help@topup.example"' in page.text
    assert "Setiap hari, 8 pagi hingga 10 malam" in page.text
    assert 'href="/recover"' in page.text
    assert '<section class="card support" id="support"' in page.text  # the status page links it


async def test_a_method_with_its_own_activation_times_is_shown_apart() -> None:
    fakes = await on_fakes()
    services = fakes.services
    slow = replace(
        services.methods.get("debit_card"),  # type: ignore[type-var]
        activation_typical_delay_s=1800,
        activation_late_after_s=86_400,
    )
    methods = tuple(slow if m.code == "debit_card" else m for m in services.methods.methods)
    services.methods = replace(services.methods, methods=methods)

    found = activation_help(services, "web")

    cards = [group for group in found.groups if group.kind is MethodKind.CARD]
    assert [[limits.method.code for limits in group.methods] for group in cards] == [
        ["credit_card"],
        ["debit_card"],
    ]
    assert cards[1].typical == dt.timedelta(minutes=30)
    assert cards[1].late_after == dt.timedelta(days=1)
    default = services.limits.activation.activation_typical_delay_s
    assert cards[0].typical == dt.timedelta(seconds=default)
    assert cards[0].approval is None
    wallets = [group for group in found.groups if group.kind is MethodKind.EWALLET]
    assert wallets and all(group.approval for group in wallets)


def test_placeholders_read_as_an_ellipsis_and_literal_braces_stay() -> None:
    assert without_placeholders("{method} takes at most {maximum}.") == "… takes at most …"
    assert without_placeholders("Use {{braces}} for {field}, then go.") == (
        "Use {braces} for …, then go."
    )
