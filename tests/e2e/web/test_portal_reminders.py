"""The reminders pages over HTTP, without JavaScript: the preferences page behind a sign-in, the
app's push subscription posted as the page's script does, the service worker's push handler,
and unsubscribing from an e-mail's link without signing in."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest

from tests.conftest import AppFactory
from tests.e2e.web.conftest import site_client
from tests.e2e.web.test_portal_account import CARD, Site
from topup.adapters.notify.web_push import MemoryPush
from topup.domain.reminders import ReminderChannel
from topup.services.demo import load_demo
from topup.services.reminders import choices
from topup.settings import LimitSettings


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[Site]:
    application = make_app(limits=LimitSettings(login_slowdown_s=0, login_per_minute_max=1000))
    application.services.push = MemoryPush()
    await load_demo(application.services)
    async with site_client(application) as client:
        yield Site(application, client)


async def test_the_reminders_page_needs_a_sign_in_and_saves_each_cards_channels(site: Site) -> None:
    answer = await site.client.get("/accounts/reminders")
    assert answer.status_code == 303 and "/accounts/sign-in" in answer.headers["location"]
    await site.signed_up_and_in()
    await site.link(CARD)
    page = await site.client.get("/accounts/reminders")
    assert page.status_code == 200
    assert page.text.count('type="checkbox"') == 3 and page.text.count(" checked") == 3
    assert f'data-key="{MemoryPush.public_key}"' in page.text
    card_id = page.text.split('value="', 2)[2].split(":", 1)[0]
    saved = await site.post("/accounts/reminders", {"on": f"{card_id}:email"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=saved")
    page = await site.client.get("/accounts/reminders?notice=saved")
    assert page.text.count(" checked") == 1
    other = await site.post("/accounts/reminders", {"on": "another-card:sms"})
    assert other.status_code == 404


async def test_the_apps_push_subscription_is_stored_for_the_account(site: Site) -> None:
    await site.signed_up_and_in()
    # The script sends the page's token (data-csrf) in the X-CSRF-Token header.
    token = re.search(r'data-csrf="([^"]+)"', (await site.client.get("/accounts/reminders")).text)
    assert token is not None
    subscription = {
        "endpoint": "https://push.example/send/abc",
        "keys": {
            "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
            "auth": "tBHItJI5svbpez7KI4CCXg",
        },
    }
    saved = await site.client.post(
        "/accounts/reminders/push",
        content=json.dumps(subscription),
        headers={"content-type": "application/json", "x-csrf-token": token.group(1)},
    )
    assert saved.status_code == 204, saved.text
    page = await site.client.get("/accounts/reminders")
    assert "/accounts/reminders/push/off" in page.text
    bad = await site.client.post(
        "/accounts/reminders/push",
        content=json.dumps({"endpoint": "http://push.example/x", "keys": {}}),
        headers={"content-type": "application/json", "x-csrf-token": token.group(1)},
    )
    assert bad.status_code == 400
    without_token = await site.client.post(
        "/accounts/reminders/push",
        content=json.dumps(subscription),
        headers={"content-type": "application/json"},
    )
    assert without_token.status_code == 403
    off = await site.post("/accounts/reminders/push/off", {}, form_at="/accounts/reminders")
    assert off.status_code == 303
    assert "/accounts/reminders/push/off" not in (await site.client.get("/accounts/reminders")).text


async def test_the_service_worker_shows_a_push_as_a_notification(site: Site) -> None:
    worker = await site.client.get("/service-worker.js")
    assert 'addEventListener("push"' in worker.text and "showNotification" in worker.text
    assert 'addEventListener("notificationclick"' in worker.text
    assert "const ICON = " in worker.text


async def test_unsubscribing_from_an_e_mails_link_needs_no_sign_in(site: Site) -> None:
    services = site.application.services
    async with services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=CARD)
    assert card is not None
    token = choices.unsubscribe_token(services, card.id, ReminderChannel.EMAIL)
    page = await site.client.get(f"/reminders/unsubscribe?token={token}")
    assert page.status_code == 200 and "+60 12-345 6789" in page.text
    assert '<meta name="referrer" content="no-referrer">' in page.text
    done = await site.post(
        "/reminders/unsubscribe", {"token": token}, form_at=f"/reminders/unsubscribe?token={token}"
    )
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    async with services.unit_of_work() as uow:
        assert await uow.reminders.preferences([card.id]) == {(card.id, "email"): False}
    broken = await site.client.get("/reminders/unsubscribe?token=" + token[:-4])
    assert broken.status_code == 422 and "This link does not work" in broken.text
