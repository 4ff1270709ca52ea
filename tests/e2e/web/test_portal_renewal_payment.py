"""Paying on the portal over HTTP, as the payment form's script does (a token from the sandbox
PSP's tokeniser, then the form): never twice (R7a), refusals before the charge with the
alternatives (R7b, R7c), a decline, the payment password page, and an e-wallet."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.e2e.web.conftest import csrf_of, site_client
from tests.e2e.web.test_portal_renewal import pay_page
from topup.bootstrap import Application
from topup.services import queries

CARD = "+60 12-345 6789"


async def token_for(site: httpx.AsyncClient, number: str, cvc: str = "123") -> str:
    answer = await site.post(
        "/sandbox/psp/v1/tokens",
        json={"number": number, "exp_month": 12, "exp_year": 30, "cvc": cvc},
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


async def renewals_of(application: Application, number: str = CARD) -> int:
    card = await queries.balance(application.services, number)
    async with application.services.unit_of_work() as uow:
        found = await uow.renewals.for_card(card.id, limit=100)
    return len(found)


def form_of(page: str, **fields: str) -> dict[str, str]:
    data = {"csrf_token": csrf_of(page)}
    data["attempt"] = re.search(r'name="attempt" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    data.update(fields)
    return data


async def test_the_same_form_sent_twice_pays_once_and_both_land_on_its_status(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4242424242424242")
    data = form_of(page, method="credit_card", payment_token=token)
    first = await site.post(path, data=data)
    again = await site.post(path, data=data)  # refresh, or Back and Pay again
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"].startswith("/renewals/")
    assert "tok_" not in first.headers["location"]
    assert await renewals_of(demo_app) == 1


async def test_a_double_click_on_pay_makes_one_renewal(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4242424242424242")
    data = form_of(page, method="credit_card", payment_token=token)
    answers = await asyncio.gather(site.post(path, data=data), site.post(path, data=data))
    assert {answer.status_code for answer in answers} == {303}
    assert len({answer.headers["location"] for answer in answers}) == 1
    assert await renewals_of(demo_app) == 1


async def test_a_second_tab_paying_another_way_lands_on_the_first_payment(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4242424242424242")
    first = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))
    second_tab = (await site.get(path + "?method=ewallet:tng")).text
    wallet = await site.post(
        path, data=form_of(second_tab, method="ewallet:tng", wallet_account="012-345 6781")
    )
    assert wallet.headers["location"] == first.headers["location"]
    assert await renewals_of(demo_app) == 1


async def test_another_visitors_form_is_not_this_visitors_payment(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4242424242424242")
    first = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))
    async with site_client(demo_app, address="203.0.113.10") as other:
        _, other_page = await pay_page(other)
        paid = await other.post(
            path, data=form_of(other_page, method="credit_card", payment_token=token)
        )
    assert paid.status_code == 303 and paid.headers["location"] != first.headers["location"]
    assert await renewals_of(demo_app) == 2


async def test_a_declined_card_is_explained_and_the_next_attempt_may_pay(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    declined_token = await token_for(site, "4000000000000002")
    data = form_of(page, method="credit_card", payment_token=declined_token)
    declined = await site.post(path, data=data)
    assert declined.status_code == 402
    assert (
        "Your payment card was declined" in declined.text and "No money was taken" in declined.text
    )
    assert 'name="attempt" value="2"' in declined.text
    replayed = await site.post(path, data=data)  # the same form again: the same decline
    assert replayed.status_code == 402 and 'name="attempt" value="2"' in replayed.text
    assert await renewals_of(demo_app) == 1
    good = await token_for(site, "5555555555554444")
    paid = await site.post(
        path, data=form_of(declined.text, method="credit_card", payment_token=good)
    )
    assert paid.status_code == 303
    assert await renewals_of(demo_app) == 2


async def test_a_decline_is_explained_in_malay(site: httpx.AsyncClient) -> None:
    site.headers["accept-language"] = "ms"
    path, page = await pay_page(site)
    token = await token_for(site, "4000000000009995")
    declined = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))
    assert declined.status_code == 402
    assert 'lang="ms"' in declined.text
    assert "tidak mempunyai dana yang mencukupi" in declined.text  # insufficient_funds
    assert "Tiada wang diambil" in declined.text


async def test_an_international_card_kept_at_home_is_refused_before_the_charge_with_alternatives(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4000009990000104")
    refused = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))
    assert refused.status_code == 402
    assert "does not allow international payments" in refused.text
    assert 'href="#alternatives"' in refused.text and 'id="alternatives"' in refused.text
    assert "Touch &#39;n Go eWallet" in refused.text
    assert await renewals_of(demo_app) == 0  # nothing was recorded, nothing charged
    good = await token_for(site, "4242424242424242")
    paid = await site.post(
        path, data=form_of(refused.text, method="credit_card", payment_token=good)
    )
    assert paid.status_code == 303  # the same attempt, corrected
    assert await renewals_of(demo_app) == 1


async def test_a_debit_card_paid_as_credit_is_refused_before_the_charge_and_may_pay_as_debit(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4000056655665556")
    refused = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))
    assert refused.status_code == 422
    assert "This is a debit or prepaid card" in refused.text
    assert await renewals_of(demo_app) == 0
    switch = re.search(
        r'<form method="post" action="[^"]+" class="switch-method">(.*?)</form>', refused.text, re.S
    )
    assert switch is not None and 'value="debit_card"' in switch.group(1)
    paid = await site.post(
        path, data=form_of(refused.text, method="debit_card", payment_token=token)
    )
    assert paid.status_code == 303
    assert await renewals_of(demo_app) == 1


async def test_a_payment_password_is_asked_on_a_page_of_its_own(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4000000000003220")
    sent = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))
    assert sent.status_code == 303
    verify = sent.headers["location"]
    assert re.fullmatch(r"/renewals/[0-9a-f-]{36}/verify", verify)
    form = await site.get(verify)
    assert form.status_code == 200 and 'name="answer"' in form.text
    async with site_client(demo_app, address="203.0.113.11") as stranger:
        assert (await stranger.get(verify)).status_code == 404
    wrong = await site.post(verify, data={"csrf_token": csrf_of(form.text), "answer": "000000"})
    assert wrong.status_code == 422 and "The payment password is wrong" in wrong.text
    right = await site.post(verify, data={"csrf_token": csrf_of(form.text), "answer": "123456"})
    assert right.status_code == 303 and right.headers["location"] == verify.removesuffix("/verify")
    again = await site.get(verify)
    assert again.status_code == 303  # answered: its status
    assert await renewals_of(demo_app) == 1


async def test_an_e_wallet_payment_goes_on_to_the_renewals_status(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site, method="ewallet:tng")
    assert 'name="wallet_account"' in page and "at most MYR5,000.00 a day" in page
    bad = await site.post(path, data=form_of(page, method="ewallet:tng", wallet_account="12"))
    assert bad.status_code == 422 and 'href="#wallet_account"' in bad.text
    sent = await site.post(
        path, data=form_of(page, method="ewallet:tng", wallet_account="012-345 6781")
    )
    assert sent.status_code == 303
    assert re.fullmatch(r"/renewals/[0-9a-f-]{36}", sent.headers["location"])
    assert await renewals_of(demo_app) == 1


async def test_a_payment_form_without_its_csrf_token_is_refused(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, _ = await pay_page(site)
    token = await token_for(site, "4242424242424242")
    refused = await site.post(
        path, data={"method": "credit_card", "attempt": "1", "payment_token": token}
    )
    assert refused.status_code == 403
    assert await renewals_of(demo_app) == 0
