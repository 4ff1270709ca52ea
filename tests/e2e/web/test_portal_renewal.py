"""Journey 1 over HTTP without JavaScript: home -> card -> plan -> method -> pay (the PSP's
hosted page for a payment card) -> the renewal's status; and what each page refuses."""

from __future__ import annotations

import html
import re

import httpx

from tests.e2e.web.conftest import csrf_of
from topup.bootstrap import Application
from topup.services.renewals import get_renewal

CARD = "+60 12-345 6789"
GRACE_CARD = "012-345 0001"
EXPIRED_CARD = "012-345 0002"
POSTPAID_CARD = "019-876 5432"


def links(page: str) -> list[str]:
    return [html.unescape(found) for found in re.findall(r'href="([^"]+)"', page)]


def form_action(page: str, marker: str) -> str:
    found = re.search(r'<form method="post" action="([^"]+)"[^>]*' + marker, page)
    assert found, f"no form {marker}"
    return html.unescape(found.group(1))


async def look_up(site: httpx.AsyncClient, number: str) -> httpx.Response:
    home = await site.get("/")
    return await site.post("/renew", data={"csrf_token": csrf_of(home.text), "card_number": number})


async def card_page(site: httpx.AsyncClient, number: str = CARD) -> tuple[str, str]:
    found = await look_up(site, number)
    assert found.status_code == 303
    location = found.headers["location"]
    page = await site.get(location)
    assert page.status_code == 200
    return location, page.text


async def pay_page(
    site: httpx.AsyncClient, plan: str = "pack_5gb_7d", method: str = "credit_card"
) -> tuple[str, str]:
    card_path, _ = await card_page(site)
    path = f"{card_path}/{plan}/pay?method={method}"
    page = await site.get(path)
    assert page.status_code == 200, page.text
    return path.split("?")[0], page.text


async def test_the_card_page_shows_kind_status_validity_and_plans_but_not_the_number(
    site: httpx.AsyncClient,
) -> None:
    location, page = await card_page(site)
    assert location.startswith("/renew/")
    assert "123456789" not in location and "6789" not in location
    assert "Prepaid card" in page and "number ending 6789" in page
    assert "Active" in page and "Valid until" in page
    assert "5 GB, 7 days" in page and "MYR10.00" in page and "Valid 7 days" in page
    assert f"{location}/pack_5gb_7d" in links(page)


async def test_a_card_in_grace_is_explained_and_an_expired_one_offers_no_plan(
    site: httpx.AsyncClient,
) -> None:
    _, grace = await card_page(site, GRACE_CARD)
    assert "In grace period" in grace and "Renew before" in grace
    _, expired = await card_page(site, EXPIRED_CARD)
    assert "Expired" in expired and "cannot be renewed" in expired
    assert "Choose this plan" not in expired


async def test_a_mistyped_or_unknown_number_is_explained_beside_the_field(
    site: httpx.AsyncClient,
) -> None:
    unknown = await look_up(site, "012-999 9999")
    assert unknown.status_code == 404
    assert 'href="#card_number"' in unknown.text and 'aria-invalid="true"' in unknown.text
    assert 'value="012-999 9999"' in unknown.text
    empty = await look_up(site, "")
    assert empty.status_code == 422
    assert 'href="#card_number"' in empty.text


async def test_a_forged_or_damaged_checkout_reference_is_refused(site: httpx.AsyncClient) -> None:
    location, _ = await card_page(site)
    damaged = await site.get(location[:-2] + ("aa" if not location.endswith("aa") else "bb"))
    assert damaged.status_code == 404
    assert "checkout_expired" in damaged.text


async def test_the_methods_page_lists_limits_and_says_why_others_cannot_be_used(
    site: httpx.AsyncClient,
) -> None:
    card_path, _ = await card_page(site)
    page = (await site.get(f"{card_path}/pack_5gb_7d")).text
    assert "credit card" in page and "MYR1.00 to MYR5,000.00 per payment" in page
    assert "Touch &#39;n Go eWallet" in page or "Touch 'n Go eWallet" in page
    assert "at most MYR5,000.00 a day per wallet account" in page
    assert "Alipay</strong>: Not offered at the moment." in page
    assert "cash</strong>: Paid to the staff in our stores only." in page


async def test_without_javascript_a_card_is_paid_on_the_psps_hosted_page_and_lands_on_the_status(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    assert 'name="card_number"' not in page  # its fields have no name: never sent to topup
    sent = await site.post(
        path, data={"csrf_token": csrf_of(page), "method": "credit_card", "attempt": "1"}
    )
    assert sent.status_code == 303
    hosted_url = sent.headers["location"]
    assert hosted_url.startswith("/sandbox/psp/checkout?")
    hosted = await site.get(hosted_url)
    assert hosted.status_code == 200 and "MYR10.00" in hosted.text
    return_to = html.unescape(re.search(r'name="return_to" value="([^"]+)"', hosted.text).group(1))
    accepted = await site.post(
        "/sandbox/psp/checkout",
        data={
            "csrf_token": csrf_of(hosted.text),
            "return_to": return_to,
            "amount_minor": "1000",
            "currency": "MYR",
            "card_number": "4242 4242 4242 4242",
            "expiry": "12/30",
            "cvc": "123",
        },
    )
    assert accepted.status_code == 200, accepted.text
    token = re.search(r'name="payment_token" value="([^"]+)"', accepted.text).group(1)
    assert "4242424242424242" not in return_to + token
    paid = await site.post(
        return_to, data={"csrf_token": csrf_of(accepted.text), "payment_token": token}
    )
    assert paid.status_code == 303, paid.text
    status = paid.headers["location"]
    assert re.fullmatch(r"/renewals/[0-9a-f-]{36}", status)
    view = await get_renewal(demo_app.services, status.rsplit("/", 1)[1])
    assert view.renewal.channel == "web" and view.renewal.plan_code == "pack_5gb_7d"
    assert view.payment is not None and view.payment.last4 == "4242"


PAGE_BYTES_MAX = 60 * 1024  # a page with its CSS and scripts, compressed


async def test_every_page_of_the_journey_is_small_with_its_css_and_scripts(
    site: httpx.AsyncClient,
) -> None:
    import gzip

    card_path, card = await card_page(site)
    pages = {
        "home": (await site.get("/")).text,
        "card": card,
        "methods": (await site.get(f"{card_path}/pack_5gb_7d")).text,
        "pay": (await site.get(f"{card_path}/pack_5gb_7d/pay?method=credit_card")).text,
    }
    for name, page in pages.items():
        total = len(gzip.compress(page.encode()))
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
            total += len(gzip.compress((await site.get(html.unescape(asset))).content))
        assert total <= PAGE_BYTES_MAX, (name, total)


async def test_every_page_of_the_checkout_keeps_the_portals_header_links(
    site: httpx.AsyncClient,
) -> None:
    """The checkout's views name their sales channel "channel": the header is the portal's."""
    location, card = await card_page(site)
    methods = (await site.get(f"{location}/pack_5gb_7d")).text
    _, pay = await pay_page(site)
    for page in (card, methods, pay):
        assert {"/recover", "/help"} <= set(links(page))
