"""A linked card's timeline over HTTP (no JavaScript), on SQLite and PostgreSQL: every kind of
card event a sentence in the visitor's language with its money and dates formatted (the profile's
time zone, hour and minute); only the account's own cards; linked from "my cards". The
auto-renewal page's next charge has no seconds, and its error maximums are grouped."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import AsyncIterator

import pytest

from tests.conftest import AppFactory
from tests.e2e.web.conftest import site_client
from tests.e2e.web.test_portal_account import CARD, EMAIL, GRACE_CARD, Site
from tests.fleets import PAYMENT_CARD, make_fleet
from topup.domain.card_events import CardEventKind
from topup.domain.money import Money
from topup.i18n import format_money
from topup.i18n.formatting import format_date, format_number, format_time
from topup.services import saved_payment_cards
from topup.services.auto_renewal import PaymentChoice, SetBy, set_auto_renewal, set_for_account
from topup.services.auto_renewal.settings import SetterKind
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.fleets import organisations, policy
from topup.settings import LimitSettings

ZONE = "Asia/Kuala_Lumpur"  # the profile's (my)
NEXT_TRY = dt.datetime(2026, 12, 10, 3, 4, 5, tzinfo=dt.UTC)  # 11:04 in Kuala Lumpur
GRACE_UNTIL = dt.datetime(2026, 12, 17, 15, 30, tzinfo=dt.UTC)  # 23:30 in Kuala Lumpur


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[Site]:
    application = make_app(limits=LimitSettings(login_slowdown_s=0, login_per_minute_max=1000))
    await load_demo(application.services)
    async with site_client(application) as client:
        yield Site(application, client)


async def _card_id(site: Site, number: str = CARD) -> str:
    async with site.application.services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=number)
    assert card is not None
    return card.id


async def account_id_of(services: Services, email: str) -> str:
    async with services.unit_of_work() as uow:
        account = await uow.accounts.by_email(email)
    assert account is not None
    return account.id


async def _events(site: Site, card_id: str) -> None:
    services = site.application.services
    common: dict[str, str | int] = {
        "period": "2026-12-10T12:00:00+00:00",
        "plan_code": "pack_5gb_7d",
        "amount_minor": 1000,
        "currency": "MYR",
        "method": "visa 4242",
        "charge_at": "2026-12-10T00:00:00+00:00",
        "fix_path": f"/accounts/cards/{card_id}/auto-renewal",
    }
    at = services.clock.now()
    async with services.unit_of_work() as uow:
        for kind, detail in (
            (CardEventKind.AUTO_RENEWAL_ATTEMPT, {"attempt": 1, "merchant_initiated": 1}),
            (
                CardEventKind.AUTO_RENEWAL_RETRYING,
                {
                    "attempt": 1,
                    "problem": "charge_declined",
                    "final": 0,
                    "next_try_at": NEXT_TRY.isoformat(),
                },
            ),
            (
                CardEventKind.AUTO_RENEWAL_FAILED,
                {
                    "attempt": 2,
                    "problem": "payment_card_expired",
                    "final": 1,
                    "grace_until": GRACE_UNTIL.isoformat(),
                },
            ),
            (  # paid, then refunded (the network did not apply it in time): tried again
                CardEventKind.AUTO_RENEWAL_RETRYING,
                {
                    "attempt": 2,
                    "problem": "activation_timed_out",
                    "final": 0,
                    "refunded": 1,
                    "next_try_at": NEXT_TRY.isoformat(),
                },
            ),
            (  # paid, then refused by the network for good: only customer service can help
                CardEventKind.AUTO_RENEWAL_FAILED,
                {
                    "attempt": 3,
                    "problem": "activation_failed",
                    "final": 1,
                    "refunded": 1,
                    "fix_path": "/help",
                    "grace_until": GRACE_UNTIL.isoformat(),
                },
            ),
            (CardEventKind.AUTO_RENEWAL_SUCCEEDED, {"attempt": 1, "renewal_id": "r-1"}),
            (
                CardEventKind.AUTO_TOP_UP,
                {"outcome": "bought", "data_quota_mb": 1200, "below_mb": 1500, "crossing": 1},
            ),
            (CardEventKind.DATA_LOW, {"data_quota_mb": 1200, "percent": 12}),
            (CardEventKind.STATUS_GRACE, {"from": "active", "to": "grace"}),
        ):
            await uow.cards.add_event(
                card_id=card_id, kind=kind.value, at=at, detail={**common, **detail}
            )
        await uow.commit()


def _moment(moment: dt.datetime, locale: str, joiner: str) -> str:
    return (
        format_date(moment, locale, time_zone=ZONE, width="long")
        + joiner
        + format_time(moment, locale, time_zone=ZONE)
    )


async def test_the_cards_timeline_tells_each_event_with_its_money_and_dates(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    card_id = await _card_id(site)
    await _events(site, card_id)

    cards = await site.client.get("/accounts/cards")
    assert f'href="/accounts/cards/{card_id}/timeline"' in cards.text
    english = await site.client.get(f"/accounts/cards/{card_id}/timeline")
    chinese = await site.client.get(
        f"/accounts/cards/{card_id}/timeline", headers={"accept-language": "zh-CN"}
    )

    assert english.status_code == 200, english.text
    text = html.unescape(english.text)
    money = format_money(Money(1000, "MYR"), "en")
    assert f"Auto-renewal charge, try 1: {money} with Visa 4242." in text
    assert f"We will try again on {_moment(NEXT_TRY, 'en', ', ')}." in text
    assert f"grace period, until {_moment(GRACE_UNTIL, 'en', ', ')};" in text
    assert "The payment card will have expired by the charge date." in text  # its fix
    assert "was paid but not applied, and the payment was refunded. We will try again" in text
    assert "The network did not apply the renewal in time" in text
    assert "The network refused this card, so the payment was refunded." in text
    assert '<a href="/help">' in english.text
    assert f"Auto-renewal renewed the card: {money} paid with Visa 4242." in text
    assert f"Data fell to {format_number(1200, 'en')} MB: a top-up of {money}" in text
    assert "Data is running low: 1,200 MB left (12%)." in text
    assert "the card is in its grace period" in text
    assert "11:04:05" not in text  # hour and minute only
    assert english.headers["cache-control"] == "no-store"
    chinese_text = html.unescape(chinese.text)
    assert f"我们将于 {_moment(NEXT_TRY, 'zh_Hans', ' ')} 再试一次。" in chinese_text
    assert "自动续费扣款（第 1 次尝试）" in chinese_text
    assert "自动续费已为此上网卡续费" in chinese_text
    assert "网络拒绝了此上网卡，因此款项已退回。" in chinese_text


async def test_another_accounts_card_has_no_timeline_here(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    other = await _card_id(site, GRACE_CARD)  # not linked to this account

    answer = await site.client.get(f"/accounts/cards/{other}/timeline")

    assert answer.status_code == 404


async def test_the_auto_renewal_page_shows_the_charge_to_the_minute_and_grouped_maximums(
    site: Site,
) -> None:
    await site.signed_up_and_in()
    await site.link()
    card_id = await _card_id(site)
    services = site.application.services
    await set_auto_renewal(
        services,
        card_id=card_id,
        plan_code="pack_5gb_7d",
        payment=PaymentChoice.credit(),
        set_by=SetBy(SetterKind.ACCOUNT, "x"),
    )
    path = f"/accounts/cards/{card_id}/auto-renewal"

    shown = await site.client.get(path)
    refused = await site.post(
        path,
        {"plan_code": "pack_5gb_7d", "payment": "credit", "top_up": "yes", "top_up_below_mb": "x"},
    )

    async with services.unit_of_work() as uow:
        card = await uow.cards.get(card_id)
    assert card is not None and card.validity_end is not None
    charge_at = card.validity_end - dt.timedelta(
        seconds=services.limits.auto_renewal.auto_renewal_lead_s
    )
    assert _moment(charge_at, "en", ", ") in html.unescape(shown.text)
    assert refused.status_code == 422, refused.text
    assert "from 1 to 10,000,000." in html.unescape(refused.text)
    assert "10000000" not in refused.text


async def test_a_monthly_top_up_cap_of_zero_is_refused_on_its_field(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    card_id = await _card_id(site)
    path = f"/accounts/cards/{card_id}/auto-renewal"

    refused = await site.post(
        path,
        {
            "plan_code": "pack_5gb_7d",
            "payment": "credit",
            "top_up": "yes",
            "top_up_below_mb": "100",
            "top_up_month_count_max": "0",
        },
    )

    assert refused.status_code == 422, refused.text
    shown = html.unescape(refused.text)
    assert "1 to 31 top-ups" in shown
    field_error = shown.split('id="top_up_month_count_max-error"', 1)[1].split("</p>", 1)[0]
    assert "1 to 31 top-ups" in field_error
    async with site.application.services.unit_of_work() as uow:
        assert await uow.auto_renewals.get(card_id) is None


async def test_a_fleet_card_shows_who_manages_its_auto_renewal_and_offers_no_form(
    site: Site,
) -> None:
    services = site.application.services
    fleet = await make_fleet(services, cards=1)
    await site.signed_up_and_in()
    await site.link(fleet.msisdns[0])
    card_id = await _card_id(site, fleet.msisdns[0])
    path = f"/accounts/cards/{card_id}/auto-renewal"
    admin = await account_id_of(services, "admin@fleet.example")
    await policy.request_fleet_policy(
        services, admin, fleet.organisation_id, policy.PolicyChoice.one_plan("pack_5gb_7d")
    )
    while await policy.process_policy_requests(services):  # the worker's pass, to the end
        pass

    shown = await site.client.get(path)
    refused = await site.post(path + "/off", {}, form_at="/accounts/cards/link")
    timeline = await site.client.get(f"/accounts/cards/{card_id}/timeline")

    assert shown.status_code == 200
    assert "Managed by Fleet Sdn Bhd" in html.unescape(shown.text)
    assert "<form" not in shown.text.split("<h1", 1)[1]
    assert "4242" not in shown.text  # the organisation's payment card is not shown
    assert refused.status_code == 409
    assert "Fleet Sdn Bhd manages this card's auto-renewal" in html.unescape(refused.text)
    assert "Fleet Sdn Bhd turned auto-renewal on for this card." in html.unescape(timeline.text)
    async with services.unit_of_work() as uow:
        setting = await uow.auto_renewals.get(card_id)
    assert setting is not None and setting.enabled


async def test_a_fleet_card_whose_subscriber_pays_its_auto_renewal_offers_turning_it_off(
    site: Site,
) -> None:
    """Set before the card joined the fleet and paid with the subscriber's own saved payment
    card: the organisation manages the card, but the subscriber can still stop the charges."""
    services = site.application.services
    fleet = await make_fleet(services, cards=1)
    await site.signed_up_and_in()
    await site.link(CARD)
    card_id = await _card_id(site, CARD)
    path = f"/accounts/cards/{card_id}/auto-renewal"
    subscriber = await account_id_of(services, EMAIL)
    token = await services.gateway.tokenize(PAYMENT_CARD)
    saved = await saved_payment_cards.save_payment_token(services, subscriber, token.token)
    await set_for_account(
        services,
        subscriber,
        card_id=card_id,
        plan_code="pack_5gb_7d",
        saved_payment_card_id=saved.id,
    )
    await organisations.import_cards(services, fleet.organisation_id, [CARD])

    shown = await site.client.get(path)
    assert "Managed by Fleet Sdn Bhd" in html.unescape(shown.text)
    assert "Visa 4242" in shown.text and f'action="{path}/off"' in shown.text
    turned_off = await site.post(path + "/off", {}, form_at=path)

    assert turned_off.status_code == 303, turned_off.text
    async with services.unit_of_work() as uow:
        setting = await uow.auto_renewals.get(card_id)
    assert setting is not None and not setting.enabled
    again = await site.client.get(path)
    assert f'action="{path}/off"' not in again.text  # off now; turning it on is the fleet's


async def test_an_empty_auto_renewal_form_asks_to_choose_a_plan_on_its_field(site: Site) -> None:
    await site.signed_up_and_in()
    await site.link()
    card_id = await _card_id(site)
    path = f"/accounts/cards/{card_id}/auto-renewal"

    refused = await site.post(path, {})

    assert refused.status_code == 422, refused.text
    shown = html.unescape(refused.text)
    assert 'There is no plan ""' not in shown
    plan_field = shown.split('id="plan_code"', 1)[1].split("</fieldset>", 1)[0]
    assert '<p class="field__error">Choose a plan.</p>' in plan_field
