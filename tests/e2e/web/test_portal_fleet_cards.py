"""Adding a card to the fleet by SMS code and taking one out, over HTTP without JavaScript, on
SQLite and PostgreSQL: the code the sandbox SMS sent adds the card and the fleet's page says so;
each refusal is a precise message beside its field with what was typed kept (wrong, expired and
spent codes, a card of another organisation or of the fleet already, an unknown or malformed
number, too many codes); a viewer sees neither form and is refused a post; removing asks first,
then stops the auto-renewal the fleet's policy set, which the card's timeline tells."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.conftest import AppFactory
from tests.e2e.web.conftest import site_client
from tests.e2e.web.test_portal_fleet import PASSWORD, FleetSite
from tests.fleets import PLAN, make_fleet
from topup.adapters.clock import FixedClock
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.services.accounts import LINK_CODE_ATTEMPTS_MAX, LINK_CODE_LIFETIME_S, hash_password
from topup.services.demo import load_demo
from topup.services.fleets import policy
from topup.services.fleets.policy import PolicyChoice
from topup.settings import LimitSettings

FREE_CARD = "+60123456789"  # a demo card of no organisation
FREE_CARD_TYPED = "012-345 6789"
FREE_CARD_SHOWN = "+60 12-345 6789"
UNKNOWN_CARD = "+60129999999"
CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")
SMS_CODES_PER_HOUR = 3
VIEWERS_FORM = "/bulk-renewals"
NOTICE_STOPPED = "card_removed_auto_renewal_stopped"


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[FleetSite]:
    limits = LimitSettings(
        login_slowdown_s=0,
        login_per_minute_max=1000,
        sms_codes_per_hour_max=SMS_CODES_PER_HOUR,
    )
    application = make_app(limits=limits)
    await load_demo(application.services)
    fleet = await make_fleet(
        application.services, cards=3, password_hash=await hash_password(PASSWORD)
    )
    async with site_client(application) as client:
        yield FleetSite(application, client, fleet)


async def _post(
    site: FleetSite, path: str, data: dict[str, str], *, form_at: str = "/cards/add"
) -> tuple[str, int]:
    """Post with the CSRF token of the form at ``form_at`` (a viewer's pages have no such form:
    the token of another, the bulk renewal's upload, which a viewer may use)."""
    token = await site.csrf(site.org + form_at)
    answer = await site.client.post(path, data={**data, "csrf_token": token})
    return answer.text, answer.status_code


async def _send_code(site: FleetSite, number: str = FREE_CARD_TYPED) -> str:
    """Ask for the code; the code the card's number got."""
    text, status = await _post(site, f"{site.org}/cards/add", {"card_number": number})
    assert status == 202, text
    assert "We sent a code by SMS to" in text
    assert _typed(text, "card_number") == number  # the code's form carries it
    sms = site.application.services.sms
    assert isinstance(sms, SandboxSms)
    message = sms.last_to(FREE_CARD)
    assert message is not None
    found = CODE.search(message.text)
    assert found is not None, message.text
    return found.group()


async def _verify(site: FleetSite, code: str, number: str = FREE_CARD_TYPED) -> tuple[str, int]:
    return await _post(site, f"{site.org}/cards/add/verify", {"card_number": number, "code": code})


def _typed(html: str, name: str) -> str | None:
    """The value the page's field ``name`` holds (what was typed, given back)."""
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', html)
    return None if found is None else found.group(1)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_an_admin_adds_a_card_by_the_code_sent_to_its_number(site: FleetSite) -> None:
    await site.sign_in("admin@fleet.example")
    fleet = await site.client.get(f"{site.org}/fleet")
    assert f'href="{site.org}/cards/add"' in fleet.text
    page = await site.client.get(f"{site.org}/cards/add")
    assert page.status_code == 200 and 'name="card_number"' in page.text

    code = await _send_code(site)
    sms = site.application.services.sms
    assert isinstance(sms, SandboxSms)
    sent = sms.last_to(FREE_CARD)
    assert sent is not None and "fleet of Fleet Sdn Bhd" in sent.text  # who asks for it
    answer = await site.client.post(
        f"{site.org}/cards/add/verify",
        data={
            "card_number": FREE_CARD_TYPED,
            "code": code,
            "csrf_token": await site.csrf(f"{site.org}/cards/add"),
        },
    )

    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{site.org}/fleet?added=") and "123456789" not in location
    shown = await site.client.get(location)
    assert f"{FREE_CARD_SHOWN} is in the fleet now." in shown.text
    assert shown.text.count("<tr>") == 1 + 3 + 1  # the header, the fleet's three, the new one
    again, status = await _verify(site, code)  # the code is spent: nothing happens twice
    assert status == 409 and "no longer valid" in again


async def test_a_wrong_code_says_how_many_tries_are_left_and_keeps_what_was_typed(
    site: FleetSite,
) -> None:
    await site.sign_in("admin@fleet.example")
    code = await _send_code(site)

    text, status = await _verify(site, _wrong(code))

    assert status == 422
    assert f"The code is wrong. You have {LINK_CODE_ATTEMPTS_MAX - 1} more attempts." in text
    assert 'href="#code"' in text and 'aria-invalid="true"' in text
    assert _typed(text, "code") == _wrong(code)
    assert _typed(text, "card_number") == FREE_CARD_TYPED
    text, status = await _verify(site, code)  # then the right one still adds it
    assert status == 303, text


async def test_too_many_wrong_codes_spend_the_code(site: FleetSite) -> None:
    await site.sign_in("admin@fleet.example")
    code = await _send_code(site)
    for _ in range(LINK_CODE_ATTEMPTS_MAX - 1):
        await _verify(site, _wrong(code))

    last, status = await _verify(site, _wrong(code))
    right, right_status = await _verify(site, code)

    assert status == 409 and "Too many wrong codes. Please ask for a new code." in last
    assert right_status == 409 and "Too many wrong codes" in right  # even the right one now
    assert "Send a new code" in right


async def test_an_expired_code_asks_for_a_new_one(site: FleetSite) -> None:
    await site.sign_in("admin@fleet.example")
    code = await _send_code(site)
    clock = site.application.services.clock
    assert isinstance(clock, FixedClock)
    clock.advance(LINK_CODE_LIFETIME_S + 1)
    await site.sign_in("admin@fleet.example")  # the session's idle time has passed too

    text, status = await _verify(site, code)

    assert status == 409
    assert "This code is no longer valid. Please ask for a new code." in text
    assert _typed(text, "code") == code


@pytest.mark.parametrize(
    ("number", "status", "message"),
    [
        ("other", 409, "This card belongs to another organisation."),
        ("mine", 409, "This card is already in your organisation&#39;s fleet."),
        (UNKNOWN_CARD, 404, "No card with this number is registered with us."),
        ("0123-45ab", 422, "but this one contains"),
    ],
)
async def test_a_card_that_cannot_be_added_is_refused_beside_its_number(
    site: FleetSite, number: str, status: int, message: str
) -> None:
    typed = {"other": site.fleet.other_msisdns[0], "mine": site.fleet.msisdns[0]}.get(
        number, number
    )
    await site.sign_in("admin@fleet.example")
    sms = site.application.services.sms
    assert isinstance(sms, SandboxSms)
    sent_before = len(sms.sent())

    text, answered = await _post(site, f"{site.org}/cards/add", {"card_number": typed})

    assert answered == status, text
    assert message in text
    assert 'href="#card_number"' in text
    assert _typed(text, "card_number") == typed
    assert len(sms.sent()) == sent_before  # no code went anywhere


async def test_codes_to_one_card_are_limited_per_hour(site: FleetSite) -> None:
    await site.sign_in("admin@fleet.example")
    for _ in range(SMS_CODES_PER_HOUR):
        await _send_code(site)

    text, status = await _post(site, f"{site.org}/cards/add", {"card_number": FREE_CARD_TYPED})

    assert status == 429 and "Too many attempts. Please try again in" in text
    assert _typed(text, "card_number") == FREE_CARD_TYPED


async def test_a_viewer_sees_no_add_or_remove_form_and_is_refused_a_post(
    site: FleetSite,
) -> None:
    await site.sign_in("viewer@fleet.example")
    fleet = await site.client.get(f"{site.org}/fleet")
    assert "/cards/add" not in fleet.text and "/remove" not in fleet.text
    page = await site.client.get(f"{site.org}/cards/add")
    assert page.status_code == 200 and 'name="card_number"' not in page.text
    assert "an owner or admin adds cards" in page.text

    text, status = await _post(
        site, f"{site.org}/cards/add", {"card_number": FREE_CARD}, form_at=VIEWERS_FORM
    )

    assert status == 403 and "but not change it" in text and 'name="card_number"' not in text
    sms = site.application.services.sms
    assert isinstance(sms, SandboxSms) and sms.last_to(FREE_CARD) is None
    verified, verified_status = await _post(
        site,
        f"{site.org}/cards/add/verify",
        {"card_number": FREE_CARD, "code": "123456"},
        form_at=VIEWERS_FORM,
    )
    assert verified_status == 403, verified
    card_id = await _card_id(site, site.fleet.msisdns[0])
    confirm = await site.client.get(f"{site.org}/cards/{card_id}/remove")
    assert confirm.status_code == 200 and "<form" not in confirm.text.split("<main")[1]
    removed, removed_status = await _post(
        site, f"{site.org}/cards/{card_id}/remove", {}, form_at=VIEWERS_FORM
    )
    assert removed_status == 403 and "but not change it" in removed
    assert (await site.client.get(f"{site.org}/fleet")).text.count("<tr>") == 1 + 3


async def test_a_form_without_its_csrf_token_is_refused(site: FleetSite) -> None:
    await site.sign_in("admin@fleet.example")
    answer = await site.client.post(f"{site.org}/cards/add", data={"card_number": FREE_CARD})
    assert answer.status_code == 403
    sms = site.application.services.sms
    assert isinstance(sms, SandboxSms) and sms.last_to(FREE_CARD) is None


async def _card_id(site: FleetSite, msisdn: str) -> str:
    async with site.application.services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=msisdn)
    assert card is not None
    return card.id


async def test_removing_a_card_asks_first_and_stops_the_fleets_auto_renewal(
    site: FleetSite,
) -> None:
    services = site.application.services
    fleet = site.fleet
    await policy.request_fleet_policy(
        services, fleet.admin_id, fleet.organisation_id, PolicyChoice.one_plan(PLAN)
    )
    while await policy.process_policy_requests(services):
        pass
    card_id = await _card_id(site, fleet.msisdns[0])
    await site.sign_in("admin@fleet.example")
    fleet_page = await site.client.get(f"{site.org}/fleet")
    assert f"{site.org}/cards/{card_id}/remove" in fleet_page.text

    confirm = await site.client.get(f"{site.org}/cards/{card_id}/remove")
    assert confirm.status_code == 200
    assert "Its auto-renewal, set by the fleet&#39;s policy, stops" in confirm.text
    assert (await site.client.get(f"{site.org}/fleet")).text.count("<tr>") == 1 + 3  # not yet
    text, status = await _post(site, f"{site.org}/cards/{card_id}/remove", {})
    assert status == 303, text
    shown = (await site.client.get(f"{site.org}/fleet?notice={NOTICE_STOPPED}")).text
    assert "auto-renewal the fleet&#39;s policy set for it stopped" in shown
    assert shown.count("<tr>") == 1 + 2

    async with services.unit_of_work() as uow:
        setting = await uow.auto_renewals.get(card_id)
        events = await uow.cards.events(card_id, limit=20)
        owners = await uow.organisations.owners_of_cards([card_id])
    assert setting is not None and not setting.enabled and owners == {}
    changes = [event.detail for event in events if event.kind == "auto_renewal_set"]
    assert sorted(change["enabled"] for change in changes) == [0, 1]  # on by the policy, off
    [stopped] = [change for change in changes if change["enabled"] == 0]
    assert stopped["reason"] == "left_fleet" and stopped["set_by"] == "organisation"
    assert stopped["set_by_name"] == "Fleet Sdn Bhd"
    again = await site.client.post(
        f"{site.org}/cards/{card_id}/remove",
        data={"csrf_token": await site.csrf(f"{site.org}/cards/add")},
    )
    assert again.status_code == 404  # out already: nothing to remove

    # The card's subscriber reads it on the card's timeline, and may set auto-renewal again.
    async with services.unit_of_work() as uow:
        await uow.accounts.link_card(fleet.viewer_id, card_id, at=services.clock.now())
        await uow.commit()
    await site.sign_in("viewer@fleet.example")
    timeline = await site.client.get(f"/accounts/cards/{card_id}/timeline")
    assert "Fleet Sdn Bhd turned auto-renewal off for this card." in timeline.text
    assert "The card left the organisation&#39;s fleet" in timeline.text
    own = await site.client.get(f"/accounts/cards/{card_id}/auto-renewal")
    assert "Managed by" not in own.text and 'name="plan_code"' in own.text


async def test_a_card_set_by_its_subscriber_keeps_its_auto_renewal_when_removed(
    site: FleetSite,
) -> None:
    card_id = await _card_id(site, site.fleet.msisdns[1])
    await site.sign_in("owner@fleet.example")
    confirm = await site.client.get(f"{site.org}/cards/{card_id}/remove")
    assert "Its auto-renewal" not in confirm.text  # the fleet's policy never set it
    token = await site.csrf(f"{site.org}/cards/{card_id}/remove")
    answer = await site.client.post(
        f"{site.org}/cards/{card_id}/remove", data={"csrf_token": token}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{site.org}/fleet?notice=card_removed"
    shown = await site.client.get(answer.headers["location"])
    assert "The card was removed from the fleet." in shown.text


async def test_forged_card_ids_are_not_found(site: FleetSite) -> None:
    theirs = await _card_id(site, site.fleet.other_msisdns[0])
    await site.sign_in("admin@fleet.example")
    for card_id in (theirs, "no-such-card"):
        page = await site.client.get(f"{site.org}/cards/{card_id}/remove")
        assert page.status_code == 404
        text, status = await _post(site, f"{site.org}/cards/{card_id}/remove", {})
        assert status == 404, text
        shown = await site.client.get(f"{site.org}/fleet", params={"added": card_id})
        assert "is in the fleet now" not in shown.text
    other = f"/organisations/{site.fleet.other_organisation_id}"
    assert (await site.client.get(f"{other}/cards/add")).status_code == 404
    text, status = await _post(site, f"{other}/cards/add", {"card_number": FREE_CARD})
    assert status == 404


async def test_removing_a_card_while_the_policy_is_applied_says_to_wait(site: FleetSite) -> None:
    services = site.application.services
    fleet = site.fleet
    await policy.request_fleet_policy(
        services, fleet.admin_id, fleet.organisation_id, PolicyChoice.one_plan(PLAN)
    )
    card_id = await _card_id(site, fleet.msisdns[0])
    await site.sign_in("admin@fleet.example")
    token = await site.csrf(f"{site.org}/cards/{card_id}/remove")

    answer = await site.client.post(
        f"{site.org}/cards/{card_id}/remove", data={"csrf_token": token}
    )

    assert answer.status_code == 409, answer.text
    assert "Once it has finished, you can remove this card." in answer.text
    fleet_page = await site.client.get(f"{site.org}/fleet")
    assert f"{site.org}/cards/{card_id}/remove" in fleet_page.text  # still in the fleet
