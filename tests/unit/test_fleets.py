"""Fleets on fakes: lines read and keyed, the dry run's checks, roles enforced in the services
(a viewer changes nothing; a member of another organisation gets not_found for forged ids)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tests.fleets import PLAN, add_cards, lines_of, make_fleet, work_bulk
from tests.unit.fakes import OnFakes, on_fakes
from topup.domain.auto_renewal import SetterKind, TopUpRule
from topup.domain.errors import InputError, NotFoundError, TopupError
from topup.domain.fleets import (
    BulkLineStatus,
    PolicyRefusal,
    PolicyRequest,
    bulk_line_key,
    parse_bulk_text,
)
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus
from topup.ports import PaymentCardDetails
from topup.services import auto_renewal, saved_payment_cards
from topup.services.fleets import bulk, invoices, organisations, policy
from topup.settings import LimitSettings


async def drain(fakes: OnFakes) -> None:
    """Process lines until none is open, letting waiting lines' recheck times come."""
    for _ in range(20):
        await work_bulk(fakes.services)
        if not any(line.status.is_open for line, _ in fakes.committed.bulk_lines.values()):
            return
        fakes.clock.advance(fakes.services.limits.fleets.bulk_waiting_recheck_s + 1)
    raise AssertionError("bulk lines still open")


def test_lines_are_read_with_a_header_blanks_and_other_delimiters() -> None:
    text = (
        "\ufeffnumber,plan\n\n+60191234567,pack_5gb_7d\n0191234568;pack_30gb_30d\n0191\tx\njunk\n"
    )
    lines = parse_bulk_text(text, lines_max=10)
    assert [(line.line_no, line.number, line.plan_code, line.problem) for line in lines] == [
        (3, "+60191234567", "pack_5gb_7d", None),
        (4, "0191234568", "pack_30gb_30d", None),
        (5, "0191", "x", None),
        (6, "junk", "", "bulk_line_malformed"),
    ]


def test_too_many_lines_or_none_are_refused() -> None:
    with pytest.raises(InputError) as too_many:
        parse_bulk_text("a,b\nc,d\ne,f\n", lines_max=2)
    assert too_many.value.code == "bulk_too_many_lines"
    with pytest.raises(InputError) as none:
        parse_bulk_text("number,plan\n\n", lines_max=2)
    assert none.value.code == "bulk_no_lines"


def test_a_key_is_the_same_for_the_same_card_plan_and_period_only() -> None:
    key = bulk_line_key(organisation_id="o", card_id="c", plan_code="p", period="2026-12-01")
    assert key == bulk_line_key(
        organisation_id="o", card_id="c", plan_code="p", period="2026-12-01"
    )
    others = {
        bulk_line_key(organisation_id="o2", card_id="c", plan_code="p", period="2026-12-01"),
        bulk_line_key(organisation_id="o", card_id="c2", plan_code="p", period="2026-12-01"),
        bulk_line_key(organisation_id="o", card_id="c", plan_code="p2", period="2026-12-01"),
        bulk_line_key(organisation_id="o", card_id="c", plan_code="p", period="2026-12-08"),
        bulk_line_key(
            organisation_id="o", card_id="c", plan_code="p", period="2026-12-01", generation=1
        ),
    }
    assert key not in others and len(others) == 5


async def test_the_dry_run_checks_each_line_and_adds_up_the_price() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=3)
    first, second, third = fleet.msisdns
    text = "\n".join(
        [
            f"{first},{PLAN}",
            f"{second},no_such_plan",
            f"{first},{PLAN}",  # the same card again
            f"{fleet.other_msisdns[0]},{PLAN}",  # another organisation's card
            f"12,{PLAN}",  # not a number
            f"{third},postpaid_bill",  # not for a prepaid card
            f"{third},pack_30gb_30d",
        ]
    )
    checked = await bulk.dry_run(fakes.services, fleet.viewer_id, fleet.organisation_id, text)
    problems = [line.problem for line in checked.lines]
    assert problems[0] is None and problems[6] is None
    assert problems[1] == "plan_unknown"
    assert problems[2] == "bulk_line_duplicate"
    assert problems[3] == "card_not_in_organisation"
    assert problems[4] is not None and problems[4].startswith("card_number")
    assert problems[5] is not None and problems[5].startswith("plan_")
    assert checked.total.minor == 1000 + 3500 and checked.accepted == 2
    assert fakes.database.tables.bulk_runs == {}  # a dry run writes nothing


async def test_a_viewer_cannot_start_or_retry_a_run_or_choose_the_payment_card() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services)
    text = lines_of(fleet.msisdns)
    with pytest.raises(TopupError) as refused:
        await bulk.start_run(fakes.services, fleet.viewer_id, fleet.organisation_id, text)
    assert refused.value.code == "fleet_role_forbidden"
    run = await bulk.start_run(fakes.services, fleet.admin_id, fleet.organisation_id, text)
    with pytest.raises(TopupError) as retry:
        await bulk.retry_failed(fakes.services, fleet.viewer_id, fleet.organisation_id, run.id)
    assert retry.value.code == "fleet_role_forbidden"
    with pytest.raises(TopupError) as payment:
        await organisations.choose_payment_card(
            fakes.services, fleet.viewer_id, fleet.organisation_id, "any"
        )
    assert payment.value.code == "fleet_role_forbidden"
    with pytest.raises(TopupError) as link:
        await organisations.start_card_add(
            fakes.services, fleet.viewer_id, fleet.organisation_id, fleet.msisdns[0]
        )
    assert link.value.code == "fleet_role_forbidden"
    # ... but sees the fleet and the run.
    page = await organisations.fleet_page(
        fakes.services,
        fleet.viewer_id,
        fleet.organisation_id,
        organisations.fleet_filter(fakes.services),
    )
    assert page.total == len(fleet.msisdns)
    progress = await bulk.run_progress(
        fakes.services, fleet.viewer_id, fleet.organisation_id, run.id
    )
    assert progress.to_renew == len(fleet.msisdns)


async def test_forged_ids_give_not_found_to_a_member_of_another_organisation() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services)
    services = fakes.services
    run = await bulk.start_run(
        services, fleet.owner_id, fleet.organisation_id, lines_of(fleet.msisdns)
    )
    outsider, theirs, mine = fleet.outsider_id, fleet.organisation_id, fleet.other_organisation_id
    forged = [
        organisations.fleet_page(services, outsider, theirs, organisations.fleet_filter(services)),
        organisations.fleet_export(
            services, outsider, theirs, organisations.fleet_filter(services)
        ),
        bulk.dry_run(services, outsider, theirs, lines_of(fleet.msisdns)),
        bulk.start_run(services, outsider, theirs, lines_of(fleet.msisdns)),
        bulk.run_progress(services, outsider, theirs, run.id),
        bulk.result_lines(services, outsider, theirs, run.id),
        bulk.retry_failed(services, outsider, theirs, run.id),
        invoices.issue_invoice(services, outsider, theirs, "2026-11"),
        organisations.start_card_add(services, outsider, theirs, fleet.msisdns[0]),
    ]
    for call in forged:
        with pytest.raises(NotFoundError) as refused:
            await call
        assert refused.value.code == "organisation_unknown"
    # Their run, asked for through the outsider's own organisation, does not exist there.
    for call in (
        bulk.run_progress(services, outsider, mine, run.id),
        bulk.result_lines(services, outsider, mine, run.id),
        bulk.retry_failed(services, outsider, mine, run.id),
    ):
        with pytest.raises(NotFoundError) as refused:
            await call
        assert refused.value.code == "bulk_run_unknown"
    # And the outsider's organisation cannot renew their cards.
    checked = await bulk.dry_run(services, outsider, mine, lines_of(fleet.msisdns))
    assert {line.problem for line in checked.lines} == {"card_not_in_organisation"}


async def test_a_run_renews_each_line_once_and_the_same_file_again_renews_nothing() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=4)
    services = fakes.services
    text = lines_of(fleet.msisdns) + f"{fleet.msisdns[0]},{PLAN}\n"  # a duplicate line
    run = await bulk.start_run(services, fleet.admin_id, fleet.organisation_id, text)
    # Started again at once, asking to renew them again: the same keys, the same renewals.
    again = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, text, renew_again=True
    )
    await drain(fakes)
    for made in (run, again):
        lines = await bulk.result_lines(services, None, fleet.organisation_id, made.id)
        statuses = [line.status for line in lines]
        assert statuses == [BulkLineStatus.SUCCEEDED] * 4 + [BulkLineStatus.REJECTED]
    first = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    second = await bulk.result_lines(services, None, fleet.organisation_id, again.id)
    assert [line.renewal_id for line in first] == [line.renewal_id for line in second]
    assert len(fakes.committed.renewals) == 4 and len(fakes.gateway.charges) == 4
    # Charged to the organisation's saved card with nobody present: merchant-initiated.
    payments = list(fakes.committed.payments.values())
    assert len(payments) == 4 and all(payment.merchant_initiated for payment in payments)
    progress = await bulk.run_progress(services, None, fleet.organisation_id, run.id)
    assert progress.finished and progress.percent == 100


async def test_the_same_file_after_its_renewals_are_applied_leaves_its_cards_out_unless_asked() -> (
    None
):
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=3)
    services = fakes.services
    text = lines_of(fleet.msisdns)
    await bulk.start_run(services, fleet.admin_id, fleet.organisation_id, text)
    await drain(fakes)  # renewed: each card's validity period moved on (its key with it)
    fakes.clock.advance(3600)

    checked = await bulk.dry_run(services, fleet.viewer_id, fleet.organisation_id, text)

    assert [line.problem for line in checked.lines] == ["bulk_line_renewed_recently"] * 3
    assert checked.lines[0].problem_params == {"renewed_at": "2026-11-25 16:00"}  # MYT
    assert (checked.renewed_recently, checked.accepted, checked.total.minor) == (3, 0, 0)
    with pytest.raises(TopupError) as refused:
        await bulk.start_run(services, fleet.admin_id, fleet.organisation_id, text)
    assert refused.value.code == "bulk_nothing_to_renew"
    # Asked to renew them again: checked as any other line, renewed once more.
    asked = await bulk.dry_run(
        services, fleet.viewer_id, fleet.organisation_id, text, renew_again=True
    )
    assert (asked.renewed_recently, asked.accepted, asked.total.minor) == (0, 3, 3 * 1000)
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, text, renew_again=True
    )
    await drain(fakes)
    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    assert {line.status for line in lines} == {BulkLineStatus.SUCCEEDED}
    assert len(fakes.committed.renewals) == 6
    # A day later the cards are the upload's again; a failed line never held its card.
    fakes.clock.advance(services.limits.fleets.bulk_renewed_recently_s)
    later = await bulk.dry_run(services, fleet.viewer_id, fleet.organisation_id, text)
    assert (later.renewed_recently, later.accepted) == (0, 3)


async def test_only_the_failed_lines_are_retried_with_new_keys() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=3)
    services = fakes.services
    # The second card's renewal is refused (its plan is not sold to it): it fails, the others pass.
    text = f"{fleet.msisdns[0]},{PLAN}\n{fleet.msisdns[1]},{PLAN}\n"
    run = await bulk.start_run(services, fleet.admin_id, fleet.organisation_id, text)
    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    async with services.unit_of_work() as uow:  # the card expires between the check and the run
        card = await uow.cards.by_number(msisdn=fleet.msisdns[1])
        assert card is not None
        import dataclasses

        from topup.domain.cards import CardStatus

        await uow.cards.save(
            dataclasses.replace(card, status=CardStatus.EXPIRED),
            expected_version=card.version,
            at=services.clock.now(),
        )
        await uow.commit()
    await drain(fakes)
    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    assert [line.status for line in lines] == [BulkLineStatus.SUCCEEDED, BulkLineStatus.FAILED]
    with pytest.raises(TopupError) as refused:  # the retry's check refuses it again
        await bulk.retry_failed(services, fleet.admin_id, fleet.organisation_id, run.id)
    assert refused.value.code == "bulk_nothing_to_renew"


async def test_starting_twice_with_one_start_key_makes_one_run() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services = fakes.services
    text = lines_of(fleet.msisdns)
    first = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, text, start_key="k1"
    )
    again = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, text, start_key="k1"
    )
    other = await bulk.start_run(  # (its cards are on the first run: asked to renew again)
        services, fleet.admin_id, fleet.organisation_id, text, start_key="k2", renew_again=True
    )
    assert first.id == again.id != other.id
    assert len(fakes.committed.bulk_runs) == 2


async def test_a_run_is_retried_once_and_the_dry_run_names_the_problems_params() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services = fakes.services
    checked = await bulk.dry_run(
        services, fleet.viewer_id, fleet.organisation_id, f"{fleet.msisdns[0]},no_such_plan\n"
    )
    assert checked.lines[0].problem == "plan_unknown"
    assert checked.lines[0].problem_params == {"plan": "no_such_plan"}
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, lines_of(fleet.msisdns)
    )
    ids = {(line.id, line.run_id) for line, _ in fakes.committed.bulk_lines.values()}
    for line_id, _ in ids:  # every line failed (as a declined charge would leave it)
        kept, lease = fakes.committed.bulk_lines[line_id]
        fakes.committed.bulk_lines[line_id] = (
            dataclasses.replace(kept, status=BulkLineStatus.FAILED),
            lease,
        )
    first = await bulk.retry_failed(services, fleet.admin_id, fleet.organisation_id, run.id)
    second = await bulk.retry_failed(services, fleet.admin_id, fleet.organisation_id, run.id)
    assert first.id == second.id and first.retry_of == run.id
    assert len(fakes.committed.bulk_runs) == 2


async def _apply(fakes: OnFakes, account_id: str, organisation_id: str, plan: str) -> PolicyRequest:
    """Ask for the policy, let the worker's pass apply it to the end, give the request back."""
    services = fakes.services
    fakes.clock.advance(1)  # a request a second (the newest is the one the page shows)
    made = await policy.request_fleet_policy(
        services, account_id, organisation_id, policy.PolicyChoice.one_plan(plan)
    )
    for _ in range(100):
        if not await policy.process_policy_requests(services):
            break
    found = await policy.latest_policy_request(services, account_id, organisation_id)
    assert found is not None and found.id == made.id and found.finished
    return found


async def test_the_fleet_policy_turns_auto_renewal_on_for_each_card_once() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=3)
    services = fakes.services
    choice = policy.PolicyChoice.one_plan(PLAN)
    with pytest.raises(TopupError) as refused:
        await policy.request_fleet_policy(services, fleet.viewer_id, fleet.organisation_id, choice)
    assert refused.value.code == "fleet_role_forbidden"
    with pytest.raises(NotFoundError):
        await policy.request_fleet_policy(
            services, fleet.outsider_id, fleet.organisation_id, choice
        )
    done = await _apply(fakes, fleet.admin_id, fleet.organisation_id, PLAN)
    assert (done.applied, done.already, done.refused, done.not_reached) == (3, 0, 0, 0)
    again = await _apply(fakes, fleet.admin_id, fleet.organisation_id, PLAN)
    assert (again.applied, again.already) == (0, 3)
    settings = list(fakes.committed.auto_renewals.values())
    assert len(settings) == 3 and all(s.enabled and s.plan_code == PLAN for s in settings)
    async with services.unit_of_work() as uow:
        card_ids = [
            card.id for card in await uow.cards.by_numbers(msisdns=fleet.msisdns, iccids=[])
        ]
    shown = await policy.auto_renewals_of(
        services, fleet.viewer_id, fleet.organisation_id, card_ids
    )
    assert {each.by_organisation for each in shown.values()} == {True} and len(shown) == 3
    wrong = await _apply(fakes, fleet.admin_id, fleet.organisation_id, "nope")
    assert wrong.refused == 3 and wrong.refusals[0].code == "plan_unknown"
    assert wrong.refusals[0].params == {"plan": "nope"}


async def test_the_fleet_policy_is_applied_by_the_worker_a_batch_at_a_time_one_at_once() -> None:
    limits = LimitSettings(fleet_policy_batch_size=2, fleet_policy_cards_max=5)
    fakes = await on_fakes(limits=limits)
    fleet = await make_fleet(fakes.services, cards=6)
    services, organisation = fakes.services, fleet.organisation_id
    choice = policy.PolicyChoice.one_plan(PLAN)
    made = await policy.request_fleet_policy(services, fleet.admin_id, organisation, choice)
    assert made.cards_total == 5 and not fakes.committed.auto_renewals  # nothing set yet
    with pytest.raises(TopupError) as running:  # one at a time per organisation
        await policy.request_fleet_policy(services, fleet.owner_id, organisation, choice)
    assert running.value.code == "fleet_policy_running"
    seen = []
    while await policy.process_policy_requests(services):
        found = await policy.latest_policy_request(services, fleet.viewer_id, organisation)
        assert found is not None
        seen.append((found.reached, found.applied, found.finished))
    # Two cards a pass (the page shows each step), five at most, then finished.
    assert seen == [(2, 2, False), (4, 4, False), (5, 5, True)]
    assert len(fakes.committed.auto_renewals) == 5
    assert found.not_reached == 0 and found.percent == 100
    # Finished: another may be asked for, and goes on where the bound stopped the first.
    await policy.request_fleet_policy(services, fleet.admin_id, organisation, choice)


async def test_the_fleet_policy_reaches_every_card_once_while_cards_are_renewed_meanwhile() -> None:
    limits = LimitSettings(fleet_policy_batch_size=2)
    fakes = await on_fakes(limits=limits)
    fleet = await make_fleet(fakes.services, cards=6)
    services, organisation = fakes.services, fleet.organisation_id
    await policy.request_fleet_policy(
        services, fleet.admin_id, organisation, policy.PolicyChoice.one_plan(PLAN)
    )
    later = dt.timedelta(days=30)
    while await policy.process_policy_requests(services):
        # The cards it has just set are renewed (their validity moves to the fleet's end), as
        # cards are while a policy is applied to a large fleet.
        for card_id in list(fakes.committed.auto_renewals):
            card = fakes.committed.cards[card_id]
            assert card.validity_end is not None
            fakes.committed.cards[card_id] = dataclasses.replace(
                card, validity_end=card.validity_end + later
            )
    found = await policy.latest_policy_request(services, fleet.viewer_id, organisation)
    assert found is not None and found.finished
    assert (found.reached, found.applied, found.already) == (6, 6, 0)
    assert len(fakes.committed.auto_renewals) == 6


async def test_a_policy_batch_a_killed_worker_left_is_done_again_once_its_lease_ends() -> None:
    limits = LimitSettings(fleet_policy_batch_size=3)
    fakes = await on_fakes(limits=limits)
    fleet = await make_fleet(fakes.services, cards=3)
    services, organisation = fakes.services, fleet.organisation_id
    await policy.request_fleet_policy(
        services, fleet.admin_id, organisation, policy.PolicyChoice.one_plan(PLAN)
    )
    # A worker leases it, sets one card and dies before writing its progress.
    async with services.unit_of_work() as uow:
        now = services.clock.now()
        leased = await uow.policy_requests.lease(
            now=now, lease_until=now + dt.timedelta(seconds=300), limit=1
        )
        await uow.commit()
    assert len(leased) == 1
    await policy._apply_batch(services, dataclasses.replace(leased[0], cards_total=1))
    assert len(fakes.committed.auto_renewals) == 1
    assert await policy.process_policy_requests(services) == 0  # leased: left alone
    fakes.clock.advance(services.limits.fleets.fleet_policy_lease_s + 1)
    assert await policy.process_policy_requests(services) == 1
    found = await policy.latest_policy_request(services, fleet.admin_id, organisation)
    assert found is not None and found.finished
    assert (found.reached, found.applied, found.already) == (3, 2, 1)  # each card counted once


async def test_the_fleet_policy_leaves_an_expired_card_unset_with_its_reason() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services = fakes.services
    expired = fleet.msisdns[0]
    [card] = [card for card in fakes.committed.cards.values() if card.msisdn == expired]
    grace_days = services.profile.grace_period_days
    fakes.committed.cards[card.id] = dataclasses.replace(
        card, validity_end=services.clock.now() - dt.timedelta(days=grace_days + 1)
    )

    done = await _apply(fakes, fleet.admin_id, fleet.organisation_id, PLAN)

    assert (done.applied, done.refused) == (1, 1)
    assert done.refusals == (PolicyRefusal(expired, "card_expired", {}),)
    assert card.id not in fakes.committed.auto_renewals
    coming = await auto_renewal.upcoming_auto_renewals(
        services, due_before=services.clock.now() + dt.timedelta(days=60), limit=100
    )
    assert all(each.charge_at >= services.clock.now() for each in coming)
    assert card.id not in {each.card_id for each in coming}


async def test_the_operator_may_charge_a_members_payment_card_to_its_organisations_cards_only() -> (
    None
):
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    organisation = fakes.committed.organisations[fleet.organisation_id]
    assert organisation.payment_card_id is not None and organisation.payment_card_account_id
    payment = auto_renewal.PaymentChoice.saved_card(
        organisation.payment_card_account_id, organisation.payment_card_id
    )
    ids = {card.msisdn: card.id for card in fakes.committed.cards.values()}

    mine = await auto_renewal.set_by_operator(
        services, "cli", card_id=ids[fleet.msisdns[0]], plan_code=PLAN, payment=payment
    )
    with pytest.raises(TopupError) as other:
        await auto_renewal.set_by_operator(
            services, "cli", card_id=ids[fleet.other_msisdns[0]], plan_code=PLAN, payment=payment
        )

    assert mine.enabled
    assert other.value.code == "auto_renewal_payer_not_linked"


async def test_an_organisations_card_is_the_organisations_to_set_and_its_changes_are_on_the_timeline() -> (
    None
):
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    [card] = [card for card in fakes.committed.cards.values() if card.msisdn == fleet.msisdns[0]]
    subscriber = fleet.outsider_id  # links the fleet's card to their own account
    fakes.committed.card_links[(subscriber, card.id)] = services.clock.now()
    # Set by the subscriber before the card joined the fleet (no longer possible now).
    await auto_renewal.set_auto_renewal(
        services,
        card_id=card.id,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.credit(),
        set_by=auto_renewal.SetBy(SetterKind.ACCOUNT, subscriber),
    )

    with pytest.raises(TopupError) as turn_on:
        await auto_renewal.set_for_account(
            services, subscriber, card_id=card.id, plan_code=PLAN, saved_payment_card_id=None
        )
    assert turn_on.value.code == "auto_renewal_managed_by_organisation"
    # Turning it off stays the subscriber's: they set it, and it is not the organisation's.
    assert await auto_renewal.turn_off_allowed(services, subscriber, card.id)
    assert turn_on.value.params == {"organisation": "Fleet Sdn Bhd"}
    assert await auto_renewal.managed_by(services, subscriber, card.id) == "Fleet Sdn Bhd"
    assert not [e for _, e in fakes.committed.card_events if e.kind == "auto_renewal_set"]

    await _apply(fakes, fleet.admin_id, fleet.organisation_id, PLAN)

    [event] = [e for owner, e in fakes.committed.card_events if e.kind == "auto_renewal_set"]
    assert {key: event.detail[key] for key in ("enabled", "set_by", "set_by_name", "replaced")} == {
        "enabled": 1,
        "set_by": "organisation",
        "set_by_name": "Fleet Sdn Bhd",
        "replaced": "account",
    }


async def test_a_line_succeeds_once_its_renewal_is_applied_and_fails_if_it_is_refunded() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    # The sandbox network refuses a number ending in 0000: its paid renewal is refunded.
    [refused] = await add_cards(services, 1, first=10_000)
    assert refused.endswith("0000")
    await organisations.import_cards(services, fleet.organisation_id, [refused])
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, lines_of([fleet.msisdns[0], refused])
    )

    await bulk.process_bulk_lines(services)  # both paid; nothing applied yet

    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    assert [line.status for line in lines] == [BulkLineStatus.WAITING] * 2
    assert all(line.renewal_id for line in lines)
    progress = await bulk.run_progress(services, None, fleet.organisation_id, run.id)
    assert progress.done == 0 and not progress.finished
    await drain(fakes)
    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    assert [(line.status, line.error_code) for line in lines] == [
        (BulkLineStatus.SUCCEEDED, None),
        (BulkLineStatus.FAILED, "bulk_line_refunded"),
    ]
    statuses = {r.id: r.status for r in fakes.committed.renewals.values()}
    assert [statuses[line.renewal_id or ""] for line in lines] == [
        RenewalStatus.COMPLETED,
        RenewalStatus.REFUNDED,
    ]
    progress = await bulk.run_progress(services, None, fleet.organisation_id, run.id)
    assert progress.finished and (progress.count("succeeded"), progress.count("failed")) == (1, 1)
    assert len(fakes.gateway.charges) == 2  # looked at again, never charged again


async def test_a_line_naming_a_card_outside_the_organisation_shows_only_what_was_typed() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services = fakes.services
    by_msisdn = {card.msisdn: card for card in fakes.committed.cards.values()}
    theirs = by_msisdn[fleet.other_msisdns[0]]  # another organisation's card
    [nobodys_msisdn] = await add_cards(services, 1, first=500)  # in no organisation
    nobodys = next(c for c in fakes.committed.cards.values() if c.msisdn == nobodys_msisdn)
    typed = [theirs.iccid, nobodys.iccid, "0" + nobodys_msisdn[3:]]
    text = "".join(f"{number},{PLAN}\n" for number in typed)

    checked = await bulk.dry_run(services, fleet.viewer_id, fleet.organisation_id, text)

    assert [(line.number, line.card_id, line.problem) for line in checked.lines] == [
        (number, None, "card_not_in_organisation") for number in typed
    ]
    shown = repr(checked)
    assert theirs.msisdn not in shown and nobodys_msisdn not in shown and theirs.id not in shown
    # And started anyway (another line is fine), the run's lines keep only what was typed too.
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, text + f"{fleet.msisdns[0]},{PLAN}\n"
    )
    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    assert [line.number for line in lines[:3]] == typed
    assert {line.card_id for line in lines[:3]} == {None}


async def test_an_invoice_month_is_bounded_and_read_only_for_a_member() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services, organisation = fakes.services, fleet.organisation_id
    codes = {}
    for month in ("9999-12", "0000-01", "1999-12", "2026-12", "2026-13", "2026-00", "26-1", ""):
        with pytest.raises((InputError, NotFoundError)) as refused:
            await invoices.issue_invoice(services, fleet.viewer_id, organisation, month)
        codes[month] = refused.value.code
    assert codes == {
        "9999-12": "invoice_month_out_of_range",
        "0000-01": "invoice_month_out_of_range",
        "1999-12": "invoice_month_out_of_range",
        "2026-12": "invoice_month_out_of_range",  # not begun (the clock is in 2026-11)
        "2026-13": "month_invalid",
        "2026-00": "month_invalid",
        "26-1": "month_invalid",
        "": "month_invalid",
    }
    issued = await invoices.issue_invoice(services, fleet.viewer_id, organisation, "2000-01")
    assert issued.invoice.renewals_count == 0
    # Membership first: the outsider learns nothing about the month either.
    for call in (
        invoices.issue_invoice(services, fleet.outsider_id, organisation, "9999-12"),
        invoices.issue_invoice(services, fleet.outsider_id, organisation, "nonsense"),
        invoices.issue_invoice(services, None, "no-such-organisation", "9999-12"),
    ):
        with pytest.raises(NotFoundError) as unknown:
            await call
        assert unknown.value.code == "organisation_unknown"


async def test_a_card_that_left_the_organisation_after_the_check_is_not_renewed_at_its_expense() -> (
    None
):
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=3)
    services = fakes.services
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, lines_of(fleet.msisdns)
    )
    ids = {card.msisdn: card.id for card in fakes.committed.cards.values()}
    # Between Start and the worker's pass: one card removed from the fleet, one moved to the
    # other organisation.
    del fakes.committed.organisation_cards[ids[fleet.msisdns[1]]]
    fakes.committed.organisation_cards[ids[fleet.msisdns[2]]] = fleet.other_organisation_id

    await drain(fakes)

    lines = await bulk.result_lines(services, None, fleet.organisation_id, run.id)
    assert [(line.status, line.error_code) for line in lines] == [
        (BulkLineStatus.SUCCEEDED, None),
        (BulkLineStatus.FAILED, "card_not_in_organisation"),
        (BulkLineStatus.FAILED, "card_not_in_organisation"),
    ]
    renewed = {renewal.card_id for renewal in fakes.committed.renewals.values()}
    assert renewed == {ids[fleet.msisdns[0]]} and len(fakes.gateway.charges) == 1


async def test_start_refuses_a_total_other_than_the_one_the_admin_saw() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services = fakes.services
    text = lines_of(fleet.msisdns)
    seen = await bulk.dry_run(services, fleet.admin_id, fleet.organisation_id, text)
    assert seen.total.minor == 2 * 1000
    plan = fakes.committed.plans[PLAN]  # the price changes before Start
    fakes.committed.plans[PLAN] = dataclasses.replace(plan, price=Money(1500, "MYR"))

    with pytest.raises(TopupError) as refused:
        await bulk.start_run(
            services, fleet.admin_id, fleet.organisation_id, text, shown_total=seen.total
        )

    assert refused.value.code == "bulk_total_changed"
    assert refused.value.params == {"shown": "MYR 20.00", "total": "MYR 30.00"}
    assert fakes.committed.bulk_runs == {}  # nothing started
    again = await bulk.dry_run(services, fleet.admin_id, fleet.organisation_id, text)
    run = await bulk.start_run(
        services, fleet.admin_id, fleet.organisation_id, text, shown_total=again.total
    )
    assert run.total.minor == 3000


async def _charge_auto_renewal(fakes: OnFakes, card_id: str) -> str:
    """Let the card's auto-renewal charge come and be applied; its renewal's id."""
    services = fakes.services
    coming = await auto_renewal.upcoming_auto_renewals(
        services, due_before=services.clock.now() + dt.timedelta(days=60), limit=100
    )
    [charge_at] = [each.charge_at for each in coming if each.card_id == card_id]
    fakes.clock.set(charge_at)
    await fakes.drain()
    [renewal] = [
        r
        for r in fakes.committed.renewals.values()
        if r.card_id == card_id and r.status is RenewalStatus.COMPLETED
    ]
    return renewal.id


async def test_the_invoice_lists_the_fleet_policys_auto_renewals_not_a_subscribers_own() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=2)
    services, organisation = fakes.services, fleet.organisation_id
    ids = {card.msisdn: card.id for card in fakes.committed.cards.values()}
    subscribers, policys = ids[fleet.msisdns[0]], ids[fleet.msisdns[1]]
    # The subscriber of the first card set auto-renewal with their own payment card before the
    # card joined the fleet; it charges them once.
    subscriber = fleet.outsider_id
    fakes.committed.card_links[(subscriber, subscribers)] = services.clock.now()
    token = await services.gateway.tokenize(PaymentCardDetails("5555555555554444", 12, 2030, "123"))
    own = await saved_payment_cards.save_payment_token(services, subscriber, token.token)
    await auto_renewal.set_auto_renewal(
        services,
        card_id=subscribers,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.saved_card(subscriber, own.id),
        set_by=auto_renewal.SetBy(SetterKind.ACCOUNT, subscriber),
    )
    paid_by_subscriber = await _charge_auto_renewal(fakes, subscribers)
    # Then the fleet's policy (the organisation's payment card) for every card; the second
    # card's charge comes under it.
    await _apply(fakes, fleet.admin_id, organisation, PLAN)
    paid_by_organisation = await _charge_auto_renewal(fakes, policys)
    month = f"{services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)):%Y-%m}"

    document = await invoices.issue_invoice(services, fleet.viewer_id, organisation, month)

    listed = [renewal.renewal_id for renewal in document.renewals]
    assert listed == [paid_by_organisation], (listed, paid_by_subscriber)
    assert document.invoice.gross.minor == 1000
    async with services.unit_of_work() as uow:
        spent = await uow.organisations.spend(
            organisation,
            since=services.clock.now() - dt.timedelta(days=30),
            until=services.clock.now() + dt.timedelta(days=1),
        )
    assert spent == 1000


async def test_the_invoice_lists_an_auto_top_up_charged_to_the_organisation() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=1)
    services, organisation_id = fakes.services, fleet.organisation_id
    [card] = [c for c in fakes.committed.cards.values() if c.msisdn == fleet.msisdns[0]]
    organisation = fakes.committed.organisations[organisation_id]
    assert organisation.payment_card_account_id and organisation.payment_card_id
    await auto_renewal.set_auto_renewal(
        services,
        card_id=card.id,
        plan_code=PLAN,
        payment=auto_renewal.PaymentChoice.saved_card(
            organisation.payment_card_account_id, organisation.payment_card_id
        ),
        set_by=auto_renewal.SetBy(SetterKind.ORGANISATION, organisation_id),
        top_up=TopUpRule(PLAN, 500, month_count_max=2, month_amount_max=None),
    )
    # The card's data falls below the threshold: the top-up plan is bought once.
    fakes.committed.cards[card.id] = dataclasses.replace(card, data_quota_mb=100)
    await auto_renewal.run_auto_top_ups(services)
    await fakes.drain()
    month = f"{services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)):%Y-%m}"

    document = await invoices.issue_invoice(services, fleet.viewer_id, organisation_id, month)

    [top_up] = fakes.committed.auto_top_ups.values()
    assert top_up.paid_by_organisation_id == organisation_id and top_up.renewal_id is not None
    assert [renewal.renewal_id for renewal in document.renewals] == [top_up.renewal_id]
    assert document.invoice.gross.minor == 1000
