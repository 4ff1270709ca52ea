"""Auto-renewal and auto top-up on fakes: the schedule and caps (pure rules), pre-checks that
name each problem once per period and offset, the charge (merchant-initiated, once per card and
period), retries then grace, credit paying the plan, and top-ups once per threshold crossing."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.mailed_links import confirmed_account
from tests.unit.fakes import GOOD_CARD, OnFakes, on_fakes
from topup.adapters.gateways.sandbox import revoke_token
from topup.domain.auto_renewal import (
    AttemptStatus,
    AutoRenewal,
    Schedule,
    TopUpRule,
    due_precheck,
    next_try_at,
    next_wake,
    top_up_allowed,
)
from topup.domain.card_events import CardEventKind
from topup.domain.cards import Card, CardStatus
from topup.domain.errors import TopupError
from topup.domain.ledger import EntryKind
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus
from topup.ports import (
    NetworkProvisioner,
    PaymentCardDetails,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
)
from topup.services import audit, saved_payment_cards
from topup.services.auto_renewal import (
    PaymentChoice,
    SetBy,
    auto_renewal_of,
    run_auto_renewals,
    run_auto_top_ups,
    set_auto_renewal,
    set_by_operator,
    turn_off,
    upcoming_auto_renewals,
)
from topup.services.auto_renewal.settings import SetterKind
from topup.services.auto_renewal.top_ups import top_up_if_due
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings

EMAIL = "mei@example.com"
CARD = "+60123456789"  # demo: prepaid, validity ends in 10 days, RM 5 credit, 2048 MB
DAY_S = 86_400
HOUR_S = 3600
LEAD_S = 12 * HOUR_S
LIMITS = LimitSettings(
    login_slowdown_s=0,
    auto_renewal_lead_s=LEAD_S,
    auto_renewal_tries_max=3,
    auto_renewal_retry_base_s=HOUR_S,
    auto_renewal_retry_cap_s=2 * HOUR_S,
)
SCHEDULE = Schedule(
    lead_s=LEAD_S,
    precheck_offsets_s=(3 * DAY_S, DAY_S),
    tries_max=3,
    retry_base_s=HOUR_S,
    retry_cap_s=2 * HOUR_S,
)
AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _card(number: str, month: int = 12, year: int = 2030) -> PaymentCardDetails:
    return PaymentCardDetails(number=number, expiry_month=month, expiry_year=year, cvc="123")


# --- the rules --------------------------------------------------------------------------------


def test_the_latest_precheck_due_is_run_once_and_earlier_missed_ones_are_skipped() -> None:
    charge_at = AT + dt.timedelta(days=5)
    assert due_precheck(AT, charge_at, SCHEDULE, frozenset()) is None  # 5 days before
    three_days = charge_at - dt.timedelta(days=3)
    assert due_precheck(three_days, charge_at, SCHEDULE, frozenset()) == 3 * DAY_S
    assert due_precheck(three_days, charge_at, SCHEDULE, frozenset({3 * DAY_S})) is None
    late = charge_at - dt.timedelta(hours=2)
    assert due_precheck(late, charge_at, SCHEDULE, frozenset()) == DAY_S
    assert due_precheck(charge_at, charge_at, SCHEDULE, frozenset()) is None


def test_the_next_look_is_the_next_precheck_then_the_charge() -> None:
    charge_at = AT + dt.timedelta(days=5)
    assert next_wake(AT, charge_at, SCHEDULE, frozenset()) == charge_at - dt.timedelta(days=3)
    done = frozenset({3 * DAY_S, DAY_S})
    assert next_wake(AT, charge_at, SCHEDULE, done) == charge_at


def test_retries_back_off_inside_the_window_and_stop_at_the_last_try() -> None:
    validity_end = AT + dt.timedelta(hours=12)
    assert next_try_at(AT, 1, validity_end, SCHEDULE) == AT + dt.timedelta(hours=1)
    assert next_try_at(AT, 2, validity_end, SCHEDULE) == AT + dt.timedelta(hours=2)
    assert next_try_at(AT, 3, validity_end, SCHEDULE) is None  # tries spent
    assert next_try_at(AT, 1, AT + dt.timedelta(minutes=30), SCHEDULE) is None  # window ends


def test_a_top_up_stays_within_the_months_count_and_amount() -> None:
    price = Money(1000, "MYR")
    by_count = TopUpRule("pack_5gb_7d", 500, month_count_max=2, month_amount_max=None)
    assert top_up_allowed(by_count, count_this_month=1, spent_this_month=price, price=price)
    assert not top_up_allowed(by_count, count_this_month=2, spent_this_month=price, price=price)
    by_amount = TopUpRule(
        "pack_5gb_7d", 500, month_count_max=None, month_amount_max=Money(2500, "MYR")
    )
    assert top_up_allowed(by_amount, count_this_month=1, spent_this_month=price, price=price)
    assert not top_up_allowed(
        by_amount, count_this_month=2, spent_this_month=Money(2000, "MYR"), price=price
    )


# --- on fakes ---------------------------------------------------------------------------------


class RefusingNetwork:
    """The network refuses every activation for good."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        return ProvisionResult(ProvisionStatus.PERMANENT_FAILURE, message="no such subscriber")


@pytest.fixture
async def fakes(tmp_path: Path) -> OnFakes:
    found = await on_fakes(limits=LIMITS, sandbox_revoked_tokens=str(tmp_path / "revoked.txt"))
    await confirmed_account(found.services, email=EMAIL, password="correct horse battery")
    return found


def _account_id(fakes: OnFakes) -> str:
    [account] = fakes.committed.accounts.values()
    return account.id


def _card_id(fakes: OnFakes, msisdn: str = CARD) -> str:
    [card] = [card for card in fakes.committed.cards.values() if card.msisdn == msisdn]
    return card.id


async def _saved(fakes: OnFakes, details: PaymentCardDetails) -> str:
    token = await fakes.services.gateway.tokenize(details)
    saved = await saved_payment_cards.save_payment_token(
        fakes.services, _account_id(fakes), token.token
    )
    return saved.id


async def _turn_on(
    fakes: OnFakes,
    details: PaymentCardDetails | None = None,
    *,
    plan: str = "pack_5gb_7d",
    top_up: TopUpRule | None = None,
) -> str:
    card_id = _card_id(fakes)
    payment = PaymentChoice.credit()
    if details is not None:
        payment = PaymentChoice.saved_card(_account_id(fakes), await _saved(fakes, details))
    await set_auto_renewal(
        fakes.services,
        card_id=card_id,
        plan_code=plan,
        payment=payment,
        set_by=SetBy(SetterKind.ACCOUNT, _account_id(fakes)),
        top_up=top_up,
    )
    return card_id


def _events(fakes: OnFakes, card_id: str, kind: CardEventKind) -> list[dict[str, str | int]]:
    return [
        event.detail
        for owner, event in fakes.committed.card_events
        if owner == card_id and event.kind == kind.value
    ]


async def _run_until(fakes: OnFakes, at: dt.datetime) -> None:
    fakes.clock.set(at)
    for _ in range(5):
        await run_auto_renewals(fakes.services)


def _validity_end(fakes: OnFakes, card_id: str) -> dt.datetime:
    validity_end = fakes.committed.cards[card_id].validity_end
    assert validity_end is not None
    return validity_end


async def test_the_subscriber_sees_the_next_charge_date_amount_and_method(fakes: OnFakes) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242"))

    view = await auto_renewal_of(fakes.services, card_id)

    assert view is not None and view.enabled
    assert view.next_charge_at == _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)
    assert view.amount == Money(1000, "MYR")
    assert view.method == "visa 4242"
    [coming] = await upcoming_auto_renewals(
        fakes.services, due_before=_validity_end(fakes, card_id), limit=10
    )
    assert (coming.card_id, coming.method, coming.charge_at) == (
        card_id,
        "visa 4242",
        view.next_charge_at,
    )


async def test_a_payment_card_expiring_before_the_charge_is_named_at_each_precheck_once(
    fakes: OnFakes,
) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242", month=11, year=2026))
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)

    await _run_until(fakes, charge_at - dt.timedelta(days=3))
    await _run_until(fakes, charge_at - dt.timedelta(days=3, seconds=-60))
    [early] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_PROBLEM)
    await _run_until(fakes, charge_at - dt.timedelta(days=1))

    problems = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_PROBLEM)
    assert [p["problem"] for p in problems] == ["payment_card_expired"] * 2
    assert early["method"] == "visa 4242"
    assert early["amount_minor"] == 1000 and early["currency"] == "MYR"
    assert early["charge_at"] == charge_at.isoformat(timespec="seconds")
    assert early["fix_path"] == f"/accounts/cards/{card_id}/auto-renewal"
    assert early["period"] == _validity_end(fakes, card_id).isoformat(timespec="seconds")
    assert fakes.gateway.charges == []


async def test_a_token_revoked_at_the_psp_is_found_by_asking_the_gateway(
    fakes: OnFakes, tmp_path: Path
) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242"))
    [saved] = fakes.committed.saved_payment_cards.values()
    revoke_token(tmp_path / "revoked.txt", fakes.services.tokens.open(saved.token_sealed))
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)

    await _run_until(fakes, charge_at - dt.timedelta(days=1))

    [problem] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_PROBLEM)
    assert problem["problem"] == "payment_token_revoked"


async def test_a_withdrawn_plan_and_an_amount_above_the_methods_limit_are_named(
    fakes: OnFakes,
) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242"))
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)
    plan = fakes.committed.plans["pack_5gb_7d"]
    # Withdrawn before the charge, and priced above the credit card's RM 5,000 a payment.
    fakes.committed.plans["pack_5gb_7d"] = replace(
        plan, active_until=charge_at - dt.timedelta(hours=1), price=Money(600_000, "MYR")
    )

    await _run_until(fakes, charge_at - dt.timedelta(days=1))

    problems = {p["problem"] for p in _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_PROBLEM)}
    assert problems == {"plan_withdrawn", "amount_above_method_limit"}


async def test_the_charge_is_merchant_initiated_before_validity_ends_and_made_once(
    fakes: OnFakes,
) -> None:
    # A card that asks for 3-D Secure when the payer is present: none is asked of a MIT.
    card_id = await _turn_on(fakes, _card("4000002760003184"))
    validity_end = _validity_end(fakes, card_id)
    charge_at = validity_end - dt.timedelta(seconds=LEAD_S)

    await _run_until(fakes, charge_at)
    await fakes.drain()
    await _run_until(fakes, charge_at + dt.timedelta(minutes=30))

    assert len(fakes.gateway.charges) == 1
    [payment] = fakes.committed.payments.values()
    assert payment.merchant_initiated
    [renewal] = fakes.committed.renewals.values()
    assert renewal.idempotency_key.startswith(f"auto:{card_id}:")
    assert _validity_end(fakes, card_id) == validity_end + dt.timedelta(days=7)
    assert len(_events(fakes, card_id, CardEventKind.AUTO_RENEWAL_ATTEMPT)) == 1
    [succeeded] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED)
    assert succeeded["renewal_id"] == renewal.id
    assert (await audit.audit(fakes.services)).clean


async def test_a_declined_card_is_tried_again_then_left_to_go_into_grace(fakes: OnFakes) -> None:
    card_id = await _turn_on(fakes, _card("4000000000000002"))
    validity_end = _validity_end(fakes, card_id)
    charge_at = validity_end - dt.timedelta(seconds=LEAD_S)

    await _run_until(fakes, charge_at)
    await _run_until(fakes, charge_at + dt.timedelta(hours=1))
    await _run_until(fakes, charge_at + dt.timedelta(hours=3))
    await _run_until(fakes, validity_end + dt.timedelta(hours=1))
    await fakes.drain()

    assert len(fakes.gateway.charges) == 3  # tries_max, each a new payment after a decline
    retrying = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_RETRYING)
    assert [(f["attempt"], f["final"]) for f in retrying] == [(1, 0), (2, 0)]
    assert all("next_try_at" in f for f in retrying)
    [final] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_FAILED)  # the reminder's one
    assert (final["attempt"], final["final"]) == (3, 1)
    assert {f["problem"] for f in [*retrying, final]} == {"charge_declined"}
    assert final["decline_code"] == "card_declined"
    assert "grace_until" in final
    assert fakes.committed.cards[card_id].status is CardStatus.GRACE
    attempt = fakes.committed.auto_renewal_attempts[
        (card_id, validity_end.isoformat(timespec="seconds"))
    ]
    assert attempt.status is AttemptStatus.GAVE_UP


class NotInTimeOnce:
    """The network stays busy for the first renewal it is asked to apply (its activation gives
    up: refunded as "did not complete in time"), and applies every other."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network
        self.busy_for: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        self.busy_for = self.busy_for or request.activation_id
        if request.activation_id == self.busy_for:
            return ProvisionResult(ProvisionStatus.TRANSIENT_FAILURE, message="network busy")
        return await self._network.apply(request)


def _period(fakes: OnFakes, card_id: str) -> str:
    return _validity_end(fakes, card_id).isoformat(timespec="seconds")


def _all_events(fakes: OnFakes, card_id: str) -> list[str]:
    return [event.kind for owner, event in fakes.committed.card_events if owner == card_id]


async def test_a_paid_renewal_the_network_refuses_is_refunded_and_the_period_fails_once(
    fakes: OnFakes,
) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242"))
    period = _period(fakes, card_id)
    validity_end = _validity_end(fakes, card_id)
    charge_at = validity_end - dt.timedelta(seconds=LEAD_S)
    recheck = dt.timedelta(seconds=LIMITS.auto_renewal_recheck_s)
    fakes.services.network = RefusingNetwork(fakes.services.network)  # type: ignore[assignment]

    await _run_until(fakes, charge_at)  # the charge is taken: paid, activating, not renewed
    attempt = fakes.committed.auto_renewal_attempts[(card_id, period)]
    assert attempt.status is AttemptStatus.PAID
    assert _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED) == []
    await fakes.drain()  # the network refuses it for good: refunded to the payment card
    await _run_until(fakes, charge_at + recheck)

    [renewal] = fakes.committed.renewals.values()
    assert renewal.status is RenewalStatus.REFUNDED
    assert len(fakes.gateway.charges) == 1  # not tried again: it would be refused again
    attempt = fakes.committed.auto_renewal_attempts[(card_id, period)]
    assert (attempt.status, attempt.problem) == (AttemptStatus.GAVE_UP, "activation_failed")
    assert _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED) == []
    assert _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_RETRYING) == []
    [failed] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_FAILED)
    assert failed["period"] == period and failed["final"] == 1
    assert failed["problem"] == "activation_failed" and failed["fix_path"] == "/help"
    assert failed["renewal_id"] == renewal.id and failed["refunded"] == 1
    grace_end = validity_end + dt.timedelta(days=fakes.services.profile.grace_period_days)
    assert failed["grace_until"] == grace_end.isoformat(timespec="seconds")
    # Settled: not looked at again every recheck; nothing more happens in this period.
    assert _setting(fakes, card_id).next_check_at == grace_end
    seen = _all_events(fakes, card_id)
    at = charge_at + recheck
    while at < grace_end:
        at += recheck if at < validity_end + dt.timedelta(days=1) else dt.timedelta(days=1)
        fakes.clock.set(min(at, grace_end - dt.timedelta(seconds=1)))
        assert await run_auto_renewals(fakes.services) == 0
    assert _all_events(fakes, card_id) == seen
    assert len(fakes.gateway.charges) == 1
    assert (await audit.audit(fakes.services)).clean


async def test_a_renewal_after_a_final_failure_wakes_the_pass_for_the_new_period(
    fakes: OnFakes,
) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242"))
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)
    refusing = RefusingNetwork(fakes.services.network)
    fakes.services.network = refusing  # type: ignore[assignment]
    await _run_until(fakes, charge_at)
    await fakes.drain()
    await _run_until(fakes, charge_at + dt.timedelta(hours=1))
    assert len(_events(fakes, card_id, CardEventKind.AUTO_RENEWAL_FAILED)) == 1

    fakes.services.network = refusing._network  # the subscriber renews it by hand
    await renew(
        fakes.services, RenewalRequest(card_number=CARD, plan_code="pack_5gb_7d", payment=GOOD_CARD)
    )
    await fakes.drain()  # applied: the pass looks at the new period at once

    new_charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)
    assert _setting(fakes, card_id).next_check_at == new_charge_at - dt.timedelta(days=3)
    assert _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED) == []


async def test_a_paid_renewal_not_applied_in_time_is_refunded_and_tried_again_with_a_new_key(
    tmp_path: Path,
) -> None:
    fakes = await on_fakes(
        limits=LIMITS.model_copy(update={"activation_attempts_max": 1}),
        sandbox_revoked_tokens=str(tmp_path / "revoked.txt"),
    )
    await confirmed_account(fakes.services, email=EMAIL, password="correct horse battery")
    card_id = await _turn_on(fakes, _card("4242424242424242"))
    period = _period(fakes, card_id)
    validity_end = _validity_end(fakes, card_id)
    charge_at = validity_end - dt.timedelta(seconds=LEAD_S)
    fakes.services.network = NotInTimeOnce(fakes.services.network)  # type: ignore[assignment]

    await _run_until(fakes, charge_at)
    await fakes.drain()  # the network stays busy: refunded ("did not complete in time")
    await _run_until(fakes, charge_at + dt.timedelta(minutes=30))

    [retrying] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_RETRYING)
    assert (retrying["problem"], retrying["final"], retrying["refunded"]) == (
        "activation_timed_out",
        0,
        1,
    )
    attempt = fakes.committed.auto_renewal_attempts[(card_id, period)]
    assert attempt.status is AttemptStatus.RETRY and attempt.next_try_at is not None
    assert _setting(fakes, card_id).next_check_at == attempt.next_try_at
    await _run_until(fakes, attempt.next_try_at)  # the second try, its own key
    await fakes.drain()  # applied: the pass (woken) tells the period succeeded

    assert len(fakes.gateway.charges) == 2
    renewals = sorted(fakes.committed.renewals.values(), key=lambda r: r.idempotency_key)
    assert [r.idempotency_key for r in renewals] == [f"auto:{card_id}:{period}:{n}" for n in (1, 2)]
    assert [r.status for r in renewals] == [RenewalStatus.REFUNDED, RenewalStatus.COMPLETED]
    [succeeded] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED)
    assert (succeeded["renewal_id"], succeeded["attempt"], succeeded["period"]) == (
        renewals[1].id,
        2,
        period,
    )
    assert _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_FAILED) == []
    attempt = fakes.committed.auto_renewal_attempts[(card_id, period)]
    assert attempt.status is AttemptStatus.SUCCEEDED and attempt.tries == 2
    assert _validity_end(fakes, card_id) == validity_end + dt.timedelta(days=7)
    # The next look is the new period's first pre-check, not a recheck of this one.
    new_charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)
    assert _setting(fakes, card_id).next_check_at == new_charge_at - dt.timedelta(days=3)
    assert (await audit.audit(fakes.services)).clean


async def test_the_cards_credit_pays_the_plan_with_a_balanced_entry(fakes: OnFakes) -> None:
    card_id = _card_id(fakes)
    cheap = replace(
        fakes.committed.plans["pack_5gb_7d"], code="pack_cheap", price=Money(300, "MYR")
    )
    fakes.committed.plans["pack_cheap"] = cheap
    await _turn_on(fakes, None, plan="pack_cheap")
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)

    await _run_until(fakes, charge_at)
    await fakes.drain()

    assert fakes.committed.cards[card_id].credit == Money(200, "MYR")  # RM 5 - RM 3
    assert fakes.gateway.charges == []
    assert len(_events(fakes, card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED)) == 1
    assert (await audit.audit(fakes.services)).clean


async def test_a_credit_paid_renewal_the_network_refuses_gives_the_credit_back(
    fakes: OnFakes,
) -> None:
    card_id = _card_id(fakes)
    cheap = replace(
        fakes.committed.plans["pack_5gb_7d"], code="pack_cheap", price=Money(300, "MYR")
    )
    fakes.committed.plans["pack_cheap"] = cheap
    await _turn_on(fakes, None, plan="pack_cheap")
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)
    fakes.services.network = RefusingNetwork(fakes.services.network)  # type: ignore[assignment]
    await _run_until(fakes, charge_at)
    await fakes.drain()

    assert fakes.committed.cards[card_id].credit == Money(500, "MYR")  # given back
    [renewal] = fakes.committed.renewals.values()
    assert renewal.status is RenewalStatus.REFUNDED
    assert fakes.entries(EntryKind.REFUND) == [renewal.id]
    [entry] = [e for _, e, _ in fakes.committed.ledger_entries if e.kind is EntryKind.REFUND]
    assert {p.account: p.amount.minor for p in entry.postings}[f"card_credit:{card_id}"] == -300
    assert (await audit.audit(fakes.services)).clean


async def test_credit_too_low_is_named_before_the_charge(fakes: OnFakes) -> None:
    card_id = await _turn_on(fakes, None)  # RM 10 plan, RM 5 credit
    charge_at = _validity_end(fakes, card_id) - dt.timedelta(seconds=LEAD_S)

    await _run_until(fakes, charge_at - dt.timedelta(days=1))

    [problem] = _events(fakes, card_id, CardEventKind.AUTO_RENEWAL_PROBLEM)
    assert problem["problem"] == "credit_too_low" and problem["method"] == "credit"


async def test_turned_off_nothing_is_charged(fakes: OnFakes) -> None:
    card_id = await _turn_on(fakes, _card("4242424242424242"))
    await turn_off(fakes.services, card_id=card_id, set_by=SetBy(SetterKind.ACCOUNT, "x"))

    await _run_until(fakes, _validity_end(fakes, card_id))

    assert fakes.gateway.charges == []
    view = await auto_renewal_of(fakes.services, card_id)
    assert view is not None and not view.enabled and view.next_charge_at is None


async def test_a_postpaid_card_or_a_reload_paid_by_credit_is_refused(fakes: OnFakes) -> None:
    setter = SetBy(SetterKind.ORGANISATION, "org-1")
    with pytest.raises(TopupError) as postpaid:
        await set_auto_renewal(
            fakes.services,
            card_id=_card_id(fakes, "+60198765432"),
            plan_code="postpaid_bill",
            payment=PaymentChoice.credit(),
            set_by=setter,
        )
    with pytest.raises(TopupError) as reload:
        await set_auto_renewal(
            fakes.services,
            card_id=_card_id(fakes),
            plan_code="reload_10",
            payment=PaymentChoice.credit(),
            set_by=setter,
        )
    assert postpaid.value.code == "auto_renewal_prepaid_only"
    assert reload.value.code == "auto_renewal_credit_pays_packs_only"


async def test_an_expired_card_whose_grace_ended_is_refused(fakes: OnFakes) -> None:
    card_id = _card_id(fakes)
    card = fakes.committed.cards[card_id]
    grace_days = fakes.services.profile.grace_period_days
    fakes.committed.cards[card_id] = replace(
        card, validity_end=AT - dt.timedelta(days=grace_days + 1)
    )
    fakes.clock.set(AT)

    with pytest.raises(TopupError) as expired:
        await set_auto_renewal(
            fakes.services,
            card_id=card_id,
            plan_code="pack_5gb_7d",
            payment=PaymentChoice.credit(),
            set_by=SetBy(SetterKind.ACCOUNT, _account_id(fakes)),
        )

    assert expired.value.code == "card_expired"
    assert card_id not in fakes.committed.auto_renewals


async def test_the_operator_cannot_charge_a_payment_card_to_a_card_its_account_never_linked(
    fakes: OnFakes,
) -> None:
    card_id = _card_id(fakes)
    saved = PaymentChoice.saved_card(
        _account_id(fakes), await _saved(fakes, _card("4242424242424242"))
    )

    with pytest.raises(TopupError) as unlinked:
        await set_by_operator(
            fakes.services, "cli", card_id=card_id, plan_code="pack_5gb_7d", payment=saved
        )
    assert unlinked.value.code == "auto_renewal_payer_not_linked"
    assert card_id not in fakes.committed.auto_renewals

    fakes.committed.card_links[(_account_id(fakes), card_id)] = AT
    view = await set_by_operator(
        fakes.services, "cli", card_id=card_id, plan_code="pack_5gb_7d", payment=saved
    )
    assert view.enabled and view.set_by is SetterKind.OPERATOR


async def _lower_quota(fakes: OnFakes, card_id: str, mb: int) -> None:
    card = fakes.committed.cards[card_id]
    fakes.committed.cards[card_id] = replace(card, data_quota_mb=mb)


async def test_auto_top_up_buys_once_per_crossing_within_the_monthly_cap(fakes: OnFakes) -> None:
    rule = TopUpRule("pack_5gb_7d", below_mb=500, month_count_max=1, month_amount_max=None)
    card_id = await _turn_on(fakes, _card("4242424242424242"), top_up=rule)

    assert await run_auto_top_ups(fakes.services) == 0  # 2048 MB: armed, nothing to do
    await _lower_quota(fakes, card_id, 100)
    await run_auto_top_ups(fakes.services)
    await run_auto_top_ups(fakes.services)  # the same crossing: nothing more
    await fakes.drain()
    assert len(fakes.gateway.charges) == 1
    assert fakes.committed.cards[card_id].data_quota_mb == 100 + 5 * 1024

    await run_auto_top_ups(fakes.services)  # back above: re-armed
    await _lower_quota(fakes, card_id, 50)
    await run_auto_top_ups(fakes.services)  # a second crossing this month: capped

    assert len(fakes.gateway.charges) == 1
    outcomes = [e["outcome"] for e in _events(fakes, card_id, CardEventKind.AUTO_TOP_UP)]
    assert outcomes == ["bought", "capped"]


async def _top_ups_counted(fakes: OnFakes, card_id: str) -> int:
    async with fakes.services.unit_of_work() as uow:
        count, _ = await uow.auto_renewals.top_ups_since(card_id, since=AT - dt.timedelta(days=60))
    return count


async def test_a_top_up_pending_at_the_psp_that_is_declined_is_recorded_and_frees_the_cap(
    fakes: OnFakes,
) -> None:
    rule = TopUpRule("pack_5gb_7d", below_mb=500, month_count_max=1, month_amount_max=None)
    # The gateway times out and has taken nothing: pending until the payment checks ask.
    card_id = await _turn_on(fakes, _card("4000009990000302"), top_up=rule)
    await _lower_quota(fakes, card_id, 100)

    assert (
        await top_up_if_due(fakes.services, _setting(fakes, card_id), _card_of(fakes, card_id))
        == "pending"
    )
    assert await _top_ups_counted(fakes, card_id) == 1  # counted while under way
    await run_auto_top_ups(fakes.services)  # too young to settle: nothing recorded
    assert _outcomes(fakes, card_id) == ["pending"]

    fakes.clock.set(fakes.clock.now() + dt.timedelta(seconds=LIMITS.auto_renewal_lease_s + 1))
    await fakes.drain()  # the payment checks resolve it as declined; the pass records it
    await run_auto_top_ups(fakes.services)

    assert _outcomes(fakes, card_id) == ["pending", "failed"]
    [failed] = _events(fakes, card_id, CardEventKind.AUTO_TOP_UP)[1:]
    assert failed["crossing"] == 1 and failed["renewal_id"]
    assert await _top_ups_counted(fakes, card_id) == 0  # the cap is free again
    assert (await audit.audit(fakes.services)).clean


async def test_a_top_up_pending_at_the_psp_that_settles_is_recorded_as_bought(
    fakes: OnFakes,
) -> None:
    rule = TopUpRule("pack_5gb_7d", below_mb=500, month_count_max=1, month_amount_max=None)
    card_id = await _turn_on(fakes, _card("4000009990000203"), top_up=rule)  # timeout, taken
    await _lower_quota(fakes, card_id, 100)
    await run_auto_top_ups(fakes.services)

    fakes.clock.set(fakes.clock.now() + dt.timedelta(seconds=LIMITS.auto_renewal_lease_s + 1))
    await fakes.drain()
    await run_auto_top_ups(fakes.services)
    await run_auto_top_ups(fakes.services)  # recorded once

    assert _outcomes(fakes, card_id) == ["pending", "bought"]
    assert await _top_ups_counted(fakes, card_id) == 1
    assert fakes.committed.cards[card_id].data_quota_mb == 100 + 5 * 1024
    assert len(fakes.gateway.charges) == 1


async def test_a_top_up_paid_then_refunded_is_recorded_and_frees_the_cap(fakes: OnFakes) -> None:
    rule = TopUpRule("pack_5gb_7d", below_mb=500, month_count_max=1, month_amount_max=None)
    card_id = await _turn_on(fakes, _card("4242424242424242"), top_up=rule)
    fakes.services.network = RefusingNetwork(fakes.services.network)  # type: ignore[assignment]
    await _lower_quota(fakes, card_id, 100)
    await run_auto_top_ups(fakes.services)
    await fakes.drain()  # activation refused for good: refunded to the payment card

    await run_auto_top_ups(fakes.services)

    assert _outcomes(fakes, card_id) == ["bought", "refunded"]
    assert await _top_ups_counted(fakes, card_id) == 0
    assert (await audit.audit(fakes.services)).clean


def _outcomes(fakes: OnFakes, card_id: str) -> list[str | int]:
    return [e["outcome"] for e in _events(fakes, card_id, CardEventKind.AUTO_TOP_UP)]


def _setting(fakes: OnFakes, card_id: str) -> AutoRenewal:
    return fakes.committed.auto_renewals[card_id]


def _card_of(fakes: OnFakes, card_id: str) -> Card:
    return fakes.committed.cards[card_id]
