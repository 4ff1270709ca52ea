"""The account's pages over HTTP, without JavaScript (plain form posts, as a browser with scripts
off sends them), on SQLite and PostgreSQL: sign-up confirmed by the e-mailed link, sign-in and
sign-out, the session's rotation and timeouts, a password reset, linking a card by SMS code,
"my cards", history with filters, paging and CSV, receipts, saved payment cards and a one-tap
renewal that happens once however often Pay is pressed."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import AppFactory
from tests.mailed_links import mails_to, token_in
from topup.adapters.clock import FixedClock
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.bootstrap import Application
from topup.entrypoints.site import create_site
from topup.ports import PaymentCardDetails
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings

CARD = "+60123456789"  # demo: prepaid, active, 5.00 MYR credit, 2 GB
GRACE_CARD = "+60123450001"  # demo: prepaid, in grace
EMAIL = "aisyah@example.com"
PASSWORD = "correct horse battery"
IDLE_S = 600
LIFETIME_S = 1800
SESSION_COOKIE = "topup_session"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
VISA = PaymentCardDetails("4242424242424242", 12, 2030, "123")


@dataclass
class Site:
    application: Application
    client: httpx.AsyncClient

    @property
    def clock(self) -> FixedClock:
        clock = self.application.services.clock
        assert isinstance(clock, FixedClock)
        return clock

    async def csrf(self, path: str) -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found is not None, page.text
        return found.group(1)

    async def post(
        self, path: str, data: dict[str, str], *, form_at: str | None = None
    ) -> httpx.Response:
        token = await self.csrf(form_at or path)
        return await self.client.post(path, data={**data, "csrf_token": token})

    async def sign_up_and_confirm(self, email: str = EMAIL) -> None:
        answer = await self.post("/accounts/sign-up", {"email": email, "password": PASSWORD})
        assert answer.status_code == 202, answer.text
        mails = await mails_to(self.application.services, email)
        link = urlsplit(re.findall(r"https?://\S+", mails[-1].body)[0])
        followed = await self.client.get(f"{link.path}?{link.query}")
        assert followed.status_code == 303
        assert followed.headers["location"] == "/accounts/confirm"  # the token left the URL
        confirmed = await self.post("/accounts/confirm", {"token": token_in(mails[-1])})
        assert confirmed.status_code == 303, confirmed.text
        assert confirmed.headers["location"] == "/accounts/sign-in?notice=confirmed"

    async def sign_in(self, email: str = EMAIL, password: str = PASSWORD) -> httpx.Response:
        return await self.post(
            "/accounts/sign-in", {"email": email, "password": password, "next": "/accounts/cards"}
        )

    async def signed_up_and_in(self) -> None:
        await self.sign_up_and_confirm()
        answer = await self.sign_in()
        assert answer.status_code == 303, answer.text

    async def link(self, card: str = CARD) -> None:
        sent = await self.post("/accounts/cards/link", {"card_number": card})
        assert sent.status_code == 202, sent.text
        sms = self.application.services.sms
        assert isinstance(sms, SandboxSms)
        message = sms.last_to(card)
        assert message is not None
        code = re.search(r"(?<!\d)\d{6}(?!\d)", message.text)
        assert code is not None
        linked = await self.post(
            "/accounts/cards/link/verify",
            {"card_number": card, "code": code.group()},
            form_at="/accounts/cards/link",
        )
        assert linked.status_code == 303, linked.text


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[Site]:
    limits = LimitSettings(
        login_slowdown_s=0,
        login_per_minute_max=1000,
        web_session_idle_s=IDLE_S,
        web_session_lifetime_s=LIFETIME_S,
    )
    application = make_app(limits=limits)
    await load_demo(application.services)
    transport = httpx.ASGITransport(app=create_site(application), client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Site(application, client)


def _location(answer: httpx.Response) -> str:
    return answer.headers["location"]


# --- sign-up, sign-in, sessions ------------------------------------------------------------


async def test_sign_up_confirm_and_sign_in_lead_to_my_cards(site: Site) -> None:
    await site.sign_up_and_confirm()

    answer = await site.sign_in()

    assert answer.status_code == 303
    assert _location(answer) == "/accounts/cards"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and SESSION_COOKIE in cookie
    cards = await site.client.get("/accounts/cards")
    assert cards.status_code == 200
    assert "no-store" in cards.headers["cache-control"]
    assert "Sign out" in cards.text


async def test_a_confirmation_link_works_once_and_its_token_never_stays_in_the_url(
    site: Site,
) -> None:
    await site.sign_up_and_confirm()
    mails = await mails_to(site.application.services, EMAIL)

    again = await site.post(
        "/accounts/confirm", {"token": token_in(mails[-1])}, form_at="/accounts/sign-up"
    )

    assert again.status_code == 422
    assert 'class="error-summary"' in again.text
    assert token_in(mails[-1]) not in again.text


async def test_a_wrong_password_is_refused_beside_the_field_without_saying_which(
    site: Site,
) -> None:
    await site.sign_up_and_confirm()

    answer = await site.sign_in(password="not the password")

    assert answer.status_code == 401
    assert 'class="error-summary"' in answer.text
    assert 'href="#email"' in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


async def test_signed_in_pages_send_a_visitor_without_a_session_to_sign_in(site: Site) -> None:
    for path in (
        "/accounts/cards",
        "/accounts/history",
        "/accounts/receipts",
        "/accounts/payment-cards",
        "/accounts/history.csv",
    ):
        answer = await site.client.get(path)

        assert answer.status_code == 303, path
        assert _location(answer).startswith("/accounts/sign-in?next="), path


async def test_signing_in_again_rotates_the_session_and_ends_the_old_one(site: Site) -> None:
    await site.signed_up_and_in()
    old = site.client.cookies[SESSION_COOKIE]

    again = await site.sign_in()

    new = site.client.cookies[SESSION_COOKIE]
    assert again.status_code == 303 and new != old
    site.client.cookies.set(SESSION_COOKIE, old)
    assert (await site.client.get("/accounts/cards")).status_code == 303


async def test_signing_out_revokes_the_session_on_the_server(site: Site) -> None:
    await site.signed_up_and_in()
    kept = site.client.cookies[SESSION_COOKIE]

    answer = await site.post("/accounts/sign-out", {})

    assert answer.status_code == 303
    assert _location(answer) == "/accounts/sign-in?notice=signed_out"
    site.client.cookies.set(SESSION_COOKIE, kept)  # the cookie replayed: nobody is signed in
    replayed = await site.client.get("/accounts/cards")
    assert replayed.status_code == 303
    assert _location(replayed).startswith("/accounts/sign-in")


async def test_an_idle_session_sends_the_visitor_to_sign_in_and_back(site: Site) -> None:
    await site.signed_up_and_in()
    site.clock.advance(IDLE_S + 1)

    answer = await site.client.get("/accounts/history?status=completed")

    assert answer.status_code == 303
    asked = parse_qs(urlsplit(_location(answer)).query)
    assert asked["next"] == ["/accounts/history?status=completed"]
    site.clock.advance(-IDLE_S)  # even back in time, an ended session stays ended
    assert (await site.client.get("/accounts/cards")).status_code == 303


async def test_a_session_in_use_stays_until_its_absolute_lifetime(site: Site) -> None:
    await site.signed_up_and_in()
    for _ in range(LIFETIME_S // (IDLE_S // 2) - 1):
        site.clock.advance(IDLE_S // 2)
        assert (await site.client.get("/accounts/cards")).status_code == 200

    site.clock.advance(IDLE_S // 2)

    assert (await site.client.get("/accounts/cards")).status_code == 303


async def test_a_form_without_its_csrf_token_is_refused(site: Site) -> None:
    answer = await site.client.post(
        "/accounts/sign-in", data={"email": EMAIL, "password": PASSWORD}
    )

    assert answer.status_code == 403


async def test_a_forgotten_password_is_reset_by_the_mailed_link(site: Site) -> None:
    await site.signed_up_and_in()
    session = site.client.cookies[SESSION_COOKIE]
    asked = await site.post("/accounts/password-reset", {"email": EMAIL})
    assert asked.status_code == 202
    unknown = await site.post("/accounts/password-reset", {"email": "nobody@example.com"})
    assert unknown.status_code == 202 and unknown.text == asked.text
    mails = await mails_to(site.application.services, EMAIL)
    link = urlsplit(re.findall(r"https?://\S+", mails[-1].body)[0])
    followed = await site.client.get(f"{link.path}?{link.query}")
    assert _location(followed) == "/accounts/password-reset/new"

    answer = await site.post(
        "/accounts/password-reset/new",
        {"token": token_in(mails[-1]), "password": "a brand new passphrase"},
    )

    assert _location(answer) == "/accounts/sign-in?notice=password_set"
    site.client.cookies.set(SESSION_COOKIE, session)  # signed out everywhere
    assert (await site.client.get("/accounts/cards")).status_code == 303
    assert (await site.sign_in(password="a brand new passphrase")).status_code == 303


# --- cards, history, receipts ---------------------------------------------------------------


async def test_a_card_linked_by_sms_code_shows_its_balance_read_now(site: Site) -> None:
    await site.signed_up_and_in()

    await site.link()

    page = await site.client.get("/accounts/cards?notice=linked")
    assert "+60 12-345 6789" in page.text
    assert "<meter" in page.text and "data-countdown" in page.text
    assert "RM" in page.text or "MYR" in page.text


async def test_a_card_in_grace_says_what_grace_means_and_when_it_ends(site: Site) -> None:
    await site.signed_up_and_in()

    await site.link(GRACE_CARD)

    page = await site.client.get("/accounts/cards")
    assert "What the grace period means" in page.text
    assert "The grace period ends on" in page.text


async def test_a_wrong_link_code_is_shown_beside_the_code_field(site: Site) -> None:
    await site.signed_up_and_in()
    await site.post("/accounts/cards/link", {"card_number": CARD})

    answer = await site.post(
        "/accounts/cards/link/verify",
        {"card_number": CARD, "code": "000000"},
        form_at="/accounts/cards/link",
    )

    assert answer.status_code == 422
    assert 'href="#code"' in answer.text


async def _renewals(site: Site, count: int) -> list[str]:
    ids = []
    for index in range(count):
        view = await renew(
            site.application.services,
            RenewalRequest(CARD, "pack_5gb_7d", VISA, idempotency_key=f"test-{index}"),
        )
        ids.append(view.id)
        site.clock.advance(1)
    return ids


async def test_history_pages_filters_and_exports_the_linked_cards_renewals(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    ids = await _renewals(site, 3)

    first = await site.client.get("/accounts/history", params={"page": "1"})
    declined = await site.client.get("/accounts/history", params={"status": "declined"})
    exported = await site.client.get("/accounts/history.csv")

    assert all(f"/renewals/{renewal_id}" in first.text for renewal_id in ids)
    assert f"/renewals/{ids[0]}/receipt" in first.text
    assert "No renewal matches" in declined.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert len(rows) == 1 + len(ids)


async def test_history_pages_are_limited_in_size(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    await _renewals(site, 21)

    first = await site.client.get("/accounts/history")
    second = await site.client.get("/accounts/history", params={"page": "2"})

    assert first.text.count('class="card history__item"') == 20
    assert 'rel="next"' in first.text
    assert second.text.count('class="card history__item"') == 1


async def test_history_of_another_accounts_card_shows_nothing(site: Site) -> None:
    await site.signed_up_and_in()
    await _renewals(site, 1)  # the card is not linked to this account

    page = await site.client.get("/accounts/history")

    assert "No renewal matches" in page.text


async def test_receipts_link_to_each_paid_renewals_receipt(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    ids = await _renewals(site, 2)

    page = await site.client.get("/accounts/receipts")

    assert all(f'href="/renewals/{renewal_id}/receipt"' in page.text for renewal_id in ids)


# --- saved payment cards, one-tap renewal ---------------------------------------------------


async def test_a_payment_card_saved_from_a_renewal_renews_in_one_tap_once(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    [renewal_id] = await _renewals(site, 1)
    saved = await site.post(
        "/accounts/payment-cards/from-renewal",
        {"renewal_id": renewal_id},
        form_at="/accounts/receipts",
    )
    assert _location(saved) == "/accounts/payment-cards?notice=saved"
    cards_page = await site.client.get("/accounts/payment-cards")
    assert "Visa ending in 4242" in cards_page.text and "4242424242424242" not in cards_page.text
    card_id = site.application.services  # the linked card's id comes from the cards page
    cards = await site.client.get("/accounts/cards")
    card_id = re.search(r'href="/accounts/cards/([^/"]+)/renew"', cards.text).group(1)  # type: ignore[union-attr]
    form = await site.client.get(f"/accounts/cards/{card_id}/renew")
    key = KEY.search(form.text).group(1)  # type: ignore[union-attr]
    saved_id = re.search(r'name="saved_payment_card" id="saved-([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    fields = {
        "csrf_token": token,
        "idempotency_key": key,
        "plan_code": "pack_5gb_7d",
        "saved_payment_card": saved_id,
    }

    first = await site.client.post(f"/accounts/cards/{card_id}/renew", data=fields)
    second = await site.client.post(f"/accounts/cards/{card_id}/renew", data=fields)

    assert first.status_code == 303
    assert _location(first).startswith("/renewals/")
    assert _location(second) == _location(first)
    history = await site.client.get("/accounts/history")
    assert history.text.count('class="card history__item"') == 2


async def test_a_saved_payment_card_is_removed(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    [renewal_id] = await _renewals(site, 1)
    await site.post(
        "/accounts/payment-cards/from-renewal",
        {"renewal_id": renewal_id},
        form_at="/accounts/receipts",
    )
    page = await site.client.get("/accounts/payment-cards")
    action = re.search(r'action="(/accounts/payment-cards/[^"]+/remove)"', page.text)
    assert action is not None

    removed = await site.post(action.group(1), {}, form_at="/accounts/payment-cards")

    assert _location(removed) == "/accounts/payment-cards?notice=removed"
    assert "No payment card is saved." in (await site.client.get("/accounts/payment-cards")).text


async def test_a_payment_card_is_saved_from_a_token_of_the_psps_tokeniser(site: Site) -> None:
    await site.signed_up_and_in()
    tokenised = await site.client.post(
        "/sandbox/psp/v1/tokens",
        json={"number": "5555555555554444", "exp_month": 11, "exp_year": 2031, "cvc": "321"},
    )
    assert tokenised.status_code == 201, tokenised.text

    saved = await site.post("/accounts/payment-cards", {"payment_token": tokenised.json()["token"]})
    forged = await site.post("/accounts/payment-cards", {"payment_token": "tok_sbx_forged.sig"})

    assert _location(saved) == "/accounts/payment-cards?notice=saved"
    assert forged.status_code == 422
    page = await site.client.get("/accounts/payment-cards")
    assert "Mastercard ending in 4444" in page.text
