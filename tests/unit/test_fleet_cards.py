"""A fleet's cards on fakes: the code that adds a card names the organisation; taking a card out
is an owner's or admin's, stops the auto-renewal the organisation set (on the card's timeline,
with the reason) and leaves one the operator set; the card is then its subscriber's to set."""

from __future__ import annotations

import re

import pytest

from tests.fleets import PAYMENT_CARD, PLAN, add_account, add_cards, make_fleet
from tests.unit.fakes import OnFakes, on_fakes
from topup.adapters.memory.organisations import MemoryOrganisationRepository
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.domain.auto_renewal import SetterKind
from topup.domain.cards import Card
from topup.domain.errors import ConflictError, NotFoundError, TopupError
from topup.domain.fleets import MemberRole
from topup.services import accounts, auto_renewal, saved_payment_cards
from topup.services.fleets import organisations, policy


def _card(fakes: OnFakes, msisdn: str) -> Card:
    [card] = [card for card in fakes.committed.cards.values() if card.msisdn == msisdn]
    return card


async def _policy(fakes: OnFakes, account_id: str, organisation_id: str) -> None:
    await policy.request_fleet_policy(
        fakes.services, account_id, organisation_id, policy.PolicyChoice.one_plan(PLAN)
    )
    while await policy.process_policy_requests(fakes.services):
        pass


async def test_the_code_that_adds_a_card_names_the_organisation_asking() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)

    await organisations.start_card_add(
        fakes.services, fleet.admin_id, fleet.organisation_id, "0123456789"
    )

    sms = fakes.services.sms
    assert isinstance(sms, SandboxSms)
    sent = sms.last_to("+60123456789")
    assert sent is not None and "fleet of Fleet Sdn Bhd" in sent.text


async def test_removing_a_card_stops_the_organisations_auto_renewal_of_it() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services = fakes.services
    await _policy(fakes, fleet.admin_id, fleet.organisation_id)
    card = _card(fakes, fleet.msisdns[0])

    removed = await organisations.remove_card(
        services, fleet.admin_id, fleet.organisation_id, card.id
    )

    assert removed.auto_renewal_stopped and removed.card.msisdn == card.msisdn
    assert card.id not in fakes.committed.organisation_cards
    setting = fakes.committed.auto_renewals[card.id]
    assert not setting.enabled and setting.next_check_at is None
    [stopped] = [
        event.detail
        for _, event in fakes.committed.card_events
        if event.kind == "auto_renewal_set" and event.detail["enabled"] == 0
    ]
    assert stopped["reason"] == "left_fleet" and stopped["set_by_name"] == "Fleet Sdn Bhd"
    # The other card stays, with its auto-renewal on.
    other = _card(fakes, fleet.msisdns[1])
    assert fakes.committed.organisation_cards[other.id] == fleet.organisation_id
    assert fakes.committed.auto_renewals[other.id].enabled
    # The card is its subscriber's now: no organisation manages it.
    fakes.committed.card_links[(fleet.viewer_id, card.id)] = services.clock.now()
    assert await auto_renewal.managed_by(services, fleet.viewer_id, card.id) is None


async def test_removing_a_card_leaves_the_auto_renewal_the_operator_set() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    card = _card(fakes, fleet.msisdns[0])
    await auto_renewal.set_auto_renewal(
        fakes.services,
        card_id=card.id,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.credit(),
        set_by=auto_renewal.SetBy(SetterKind.OPERATOR, "operator"),
    )

    removed = await organisations.remove_card(
        fakes.services, fleet.owner_id, fleet.organisation_id, card.id
    )

    assert not removed.auto_renewal_stopped
    assert fakes.committed.auto_renewals[card.id].enabled


async def test_a_viewer_or_another_organisation_cannot_remove_a_card() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    mine = _card(fakes, fleet.msisdns[0])
    theirs = _card(fakes, fleet.other_msisdns[0])

    with pytest.raises(TopupError) as viewer:
        await organisations.remove_card(services, fleet.viewer_id, fleet.organisation_id, mine.id)
    with pytest.raises(NotFoundError) as outsider:
        await organisations.remove_card(services, fleet.outsider_id, fleet.organisation_id, mine.id)
    with pytest.raises(NotFoundError) as other_card:
        await organisations.remove_card(services, fleet.admin_id, fleet.organisation_id, theirs.id)

    assert viewer.value.code == "fleet_role_forbidden"
    assert outsider.value.code == "organisation_unknown"
    assert other_card.value.code == "card_not_in_organisation"
    assert fakes.committed.organisation_cards[mine.id] == fleet.organisation_id
    assert fakes.committed.organisation_cards[theirs.id] == fleet.other_organisation_id


async def test_an_organisation_sets_auto_renewal_only_for_a_card_of_its_fleet() -> None:
    """A policy batch that reaches a card taken out meanwhile leaves it alone."""
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    card = _card(fakes, fleet.msisdns[0])
    await organisations.remove_card(fakes.services, fleet.admin_id, fleet.organisation_id, card.id)

    with pytest.raises(NotFoundError) as refused:
        await auto_renewal.set_auto_renewal(
            fakes.services,
            card_id=card.id,
            plan_code=PLAN,
            payment=auto_renewal.PaymentChoice.credit(),
            set_by=auto_renewal.SetBy(SetterKind.ORGANISATION, fleet.organisation_id),
        )

    assert refused.value.code == "card_not_in_organisation"
    assert card.id not in fakes.committed.auto_renewals


def _code_sent_to(fakes: OnFakes, msisdn: str) -> str:
    sms = fakes.services.sms
    assert isinstance(sms, SandboxSms)
    sent = sms.last_to(msisdn)
    assert sent is not None
    found = re.search(r"code is (\d+)", sent.text)
    assert found is not None
    return found.group(1)


async def test_a_card_added_meanwhile_by_another_organisation_is_not_reported_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two admins add the same card at once: the database keeps one organisation (the card's
    row is unique); the one that lost is told so, not that the card joined its fleet."""
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    [msisdn] = await add_cards(services, 1, first=50)
    await organisations.start_card_add(services, fleet.admin_id, fleet.organisation_id, msisdn)
    code = _code_sent_to(fakes, msisdn)
    # The other organisation's add commits between this one's check and its insert.
    await organisations.import_cards(services, fleet.other_organisation_id, [msisdn])
    unseen: dict[str, str] = {}

    async def not_yet_seen(self: object, card_ids: object) -> dict[str, str]:
        return unseen

    monkeypatch.setattr(MemoryOrganisationRepository, "owners_of_cards", not_yet_seen)

    with pytest.raises(ConflictError) as refused:
        await organisations.finish_card_add(
            services, fleet.admin_id, fleet.organisation_id, msisdn, code
        )

    assert refused.value.code == "card_in_another_organisation"
    card = _card(fakes, msisdn)
    assert fakes.committed.organisation_cards[card.id] == fleet.other_organisation_id


async def test_a_code_sent_for_one_organisation_adds_the_card_to_no_other_nor_links_it() -> None:
    """The SMS names the organisation the code is for: an admin of two organisations, or one
    who would rather link the card to their own account, cannot spend it elsewhere."""
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    await organisations.put_member(
        services, fleet.other_organisation_id, email="admin@fleet.example", role=MemberRole.ADMIN
    )
    [msisdn] = await add_cards(services, 1, first=50)
    await organisations.start_card_add(services, fleet.admin_id, fleet.organisation_id, msisdn)
    code = _code_sent_to(fakes, msisdn)

    with pytest.raises(TopupError) as elsewhere:
        await organisations.finish_card_add(
            services, fleet.admin_id, fleet.other_organisation_id, msisdn, code
        )
    with pytest.raises(TopupError) as linked:
        await accounts.verify_card_link(services, fleet.admin_id, msisdn, code)

    assert elsewhere.value.code == "link_code_wrong"
    assert linked.value.code == "link_code_wrong"
    card = _card(fakes, msisdn)
    assert card.id not in fakes.committed.organisation_cards
    assert (fleet.admin_id, card.id) not in fakes.committed.card_links
    # The organisation the SMS named still adds it with the same code.
    await organisations.finish_card_add(
        services, fleet.admin_id, fleet.organisation_id, msisdn, code
    )
    assert fakes.committed.organisation_cards[card.id] == fleet.organisation_id


async def test_a_code_sent_to_link_a_card_does_not_add_it_to_a_fleet() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    [msisdn] = await add_cards(services, 1, first=50)
    await accounts.start_card_link(services, fleet.admin_id, msisdn)
    code = _code_sent_to(fakes, msisdn)

    with pytest.raises(TopupError) as refused:
        await organisations.finish_card_add(
            services, fleet.admin_id, fleet.organisation_id, msisdn, code
        )

    assert refused.value.code == "link_code_wrong"
    assert _card(fakes, msisdn).id not in fakes.committed.organisation_cards
    await accounts.verify_card_link(services, fleet.admin_id, msisdn, code)  # still its own


async def test_removing_a_card_stops_an_auto_renewal_the_organisations_payment_card_pays() -> None:
    """The operator may have a member's saved payment card pay for a card because the card is
    in the fleet; once it is out, the organisation's money no longer renews it."""
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    card = _card(fakes, fleet.msisdns[0])
    organisation = fakes.committed.organisations[fleet.organisation_id]
    assert organisation.payment_card_account_id is not None
    assert organisation.payment_card_id is not None
    await auto_renewal.set_by_operator(
        services,
        "operator",
        card_id=card.id,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.saved_card(
            organisation.payment_card_account_id, organisation.payment_card_id
        ),
    )

    removed = await organisations.remove_card(
        services, fleet.admin_id, fleet.organisation_id, card.id
    )

    assert removed.auto_renewal_stopped
    assert not fakes.committed.auto_renewals[card.id].enabled


async def test_a_subscriber_still_turns_off_the_auto_renewal_their_own_payment_card_pays() -> None:
    """A card added to a fleet keeps the auto-renewal its subscriber set; the organisation
    manages the card from then on, but the subscriber's money is theirs to stop."""
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    subscriber = await add_account(services, "subscriber@example.com")
    [msisdn] = await add_cards(services, 1, first=50)
    card = _card(fakes, msisdn)
    fakes.committed.card_links[(subscriber, card.id)] = services.clock.now()
    token = await services.gateway.tokenize(PAYMENT_CARD)
    saved = await saved_payment_cards.save_payment_token(services, subscriber, token.token)
    await auto_renewal.set_for_account(
        services, subscriber, card_id=card.id, plan_code=PLAN, saved_payment_card_id=saved.id
    )
    await organisations.import_cards(services, fleet.organisation_id, [msisdn])

    await auto_renewal.turn_off_for_account(services, subscriber, card_id=card.id)

    assert not fakes.committed.auto_renewals[card.id].enabled
    # Turning it on again, or changing it, is the organisation's.
    with pytest.raises(TopupError) as managed:
        await auto_renewal.set_for_account(
            services, subscriber, card_id=card.id, plan_code=PLAN, saved_payment_card_id=saved.id
        )
    assert managed.value.code == "auto_renewal_managed_by_organisation"


async def test_a_subscriber_cannot_turn_off_the_auto_renewal_the_organisation_pays() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    card = _card(fakes, fleet.msisdns[0])
    fakes.committed.card_links[(fleet.viewer_id, card.id)] = services.clock.now()
    await _policy(fakes, fleet.admin_id, fleet.organisation_id)

    with pytest.raises(TopupError) as managed:
        await auto_renewal.turn_off_for_account(services, fleet.viewer_id, card_id=card.id)

    assert managed.value.code == "auto_renewal_managed_by_organisation"
    assert fakes.committed.auto_renewals[card.id].enabled


async def test_a_card_is_not_taken_out_while_the_fleets_policy_is_being_applied() -> None:
    """The policy walks the fleet a batch at a time by position: a card taken out behind it
    would shift the rest, and one card would never be reached."""
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services = fakes.services
    card = _card(fakes, fleet.msisdns[0])
    await policy.request_fleet_policy(
        services, fleet.admin_id, fleet.organisation_id, policy.PolicyChoice.one_plan(PLAN)
    )

    with pytest.raises(ConflictError) as refused:
        await organisations.remove_card(services, fleet.admin_id, fleet.organisation_id, card.id)

    assert refused.value.code == "fleet_card_remove_policy_running"
    assert refused.value.retryable
    assert fakes.committed.organisation_cards[card.id] == fleet.organisation_id
    while await policy.process_policy_requests(services):
        pass
    removed = await organisations.remove_card(
        services, fleet.admin_id, fleet.organisation_id, card.id
    )
    assert removed.auto_renewal_stopped
