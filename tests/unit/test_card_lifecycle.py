"""Prepaid cards go active -> grace -> expired with time; postpaid cards are suspended by overdue bills."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup.domain.cards import (
    Card,
    CardKind,
    CardStatus,
    Forfeit,
    advance,
    apply_bill_payment,
    apply_prepaid_renewal,
    check_renewable,
    issue_bill,
    postpaid_status_at,
    status_at,
)
from topup.domain.errors import ConflictError, InvariantError
from topup.domain.money import Money

GRACE_DAYS = 7
VALIDITY_END = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
GRACE_END = VALIDITY_END + dt.timedelta(days=GRACE_DAYS)
BILL_DUE_DATE = dt.datetime(2026, 12, 15, 0, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)
ZERO = Money.zero("MYR")
FIVE_RINGGIT = Money(500, "MYR")
A_BILL = Money(8_800, "MYR")


def myr(minor: int) -> Money:
    return Money(minor, "MYR")


def prepaid_card(
    *,
    status: CardStatus = CardStatus.ACTIVE,
    validity_end: dt.datetime | None = VALIDITY_END,
    credit: Money = FIVE_RINGGIT,
    data_quota_mb: int = 2048,
) -> Card:
    return Card(
        id="card_1",
        msisdn="+60123456789",
        iccid="8960012345678901234",
        kind=CardKind.PREPAID,
        status=status,
        currency="MYR",
        credit=credit,
        data_quota_mb=data_quota_mb,
        validity_end=validity_end,
        bill_due=ZERO,
        bill_due_date=None,
    )


def postpaid_card(
    *,
    status: CardStatus = CardStatus.ACTIVE,
    bill_due: Money = A_BILL,
    bill_due_date: dt.datetime | None = BILL_DUE_DATE,
) -> Card:
    return Card(
        id="card_2",
        msisdn="+60129876543",
        iccid="8960012345678901235",
        kind=CardKind.POSTPAID,
        status=status,
        currency="MYR",
        credit=ZERO,
        data_quota_mb=0,
        validity_end=None,
        bill_due=bill_due,
        bill_due_date=bill_due_date,
    )


def renew(card: Card, at: dt.datetime, *, days: int = 30, quota_mb: int = 5120) -> Card:
    return apply_prepaid_renewal(
        card,
        at=at,
        grace_period_days=GRACE_DAYS,
        validity_days=days,
        data_quota_mb=quota_mb,
        credit=ZERO,
    )


# -- prepaid status over time ---------------------------------------------------------------


@pytest.mark.parametrize(
    "at, expected",
    [
        (VALIDITY_END - dt.timedelta(days=10), CardStatus.ACTIVE),
        (VALIDITY_END - TICK, CardStatus.ACTIVE),
        (VALIDITY_END, CardStatus.GRACE),
        (VALIDITY_END + TICK, CardStatus.GRACE),
        (GRACE_END - TICK, CardStatus.GRACE),
        (GRACE_END, CardStatus.EXPIRED),
        (GRACE_END + dt.timedelta(days=365), CardStatus.EXPIRED),
    ],
    ids=[
        "well before",
        "just before end",
        "at validity end",
        "just after end",
        "last moment of grace",
        "at grace end",
        "a year later",
    ],
)
def test_a_prepaid_card_is_active_then_in_grace_then_expired(
    at: dt.datetime, expected: CardStatus
) -> None:
    assert status_at(prepaid_card(), at, GRACE_DAYS) is expected


def test_a_prepaid_card_without_grace_expires_exactly_at_its_validity_end() -> None:
    card = prepaid_card()

    assert status_at(card, VALIDITY_END - TICK, 0) is CardStatus.ACTIVE
    assert status_at(card, VALIDITY_END, 0) is CardStatus.EXPIRED


def test_a_prepaid_card_without_validity_is_expired() -> None:
    assert (
        status_at(prepaid_card(validity_end=None), VALIDITY_END, GRACE_DAYS) is CardStatus.EXPIRED
    )


def test_an_expired_card_stays_expired_even_if_asked_before_its_old_validity_end() -> None:
    card = prepaid_card(status=CardStatus.EXPIRED)

    assert status_at(card, VALIDITY_END - dt.timedelta(days=1), GRACE_DAYS) is CardStatus.EXPIRED


def test_advancing_into_grace_keeps_credit_and_quota_and_forfeits_nothing() -> None:
    card = prepaid_card()

    in_grace, forfeit = advance(card, VALIDITY_END, GRACE_DAYS)

    assert forfeit is None
    assert in_grace == replace(card, status=CardStatus.GRACE)


def test_advancing_to_expiry_forfeits_credit_and_quota_and_zeroes_them() -> None:
    card = prepaid_card(status=CardStatus.GRACE, credit=myr(1_234), data_quota_mb=700)

    expired, forfeit = advance(card, GRACE_END, GRACE_DAYS)

    assert forfeit == Forfeit(credit=myr(1_234), data_quota_mb=700)
    assert expired.status is CardStatus.EXPIRED
    assert expired.credit == ZERO
    assert expired.data_quota_mb == 0
    assert expired.validity_end == card.validity_end
    expired.check_invariants()


def test_a_card_that_skips_grace_unobserved_still_forfeits_when_it_expires() -> None:
    card = prepaid_card(credit=myr(99), data_quota_mb=1)

    expired, forfeit = advance(card, GRACE_END + dt.timedelta(days=3), GRACE_DAYS)

    assert expired.status is CardStatus.EXPIRED
    assert forfeit == Forfeit(credit=myr(99), data_quota_mb=1)


def test_advancing_an_expired_card_again_forfeits_nothing_more() -> None:
    expired, _ = advance(prepaid_card(), GRACE_END, GRACE_DAYS)

    again, forfeit = advance(expired, GRACE_END + dt.timedelta(days=1), GRACE_DAYS)

    assert forfeit is None
    assert again == expired


def test_advancing_a_card_whose_status_is_current_changes_nothing() -> None:
    card = prepaid_card()

    same, forfeit = advance(card, VALIDITY_END - TICK, GRACE_DAYS)

    assert same is card
    assert forfeit is None


# -- prepaid renewal -------------------------------------------------------------------------


def test_a_renewal_while_active_extends_from_the_validity_end() -> None:
    card = prepaid_card()

    renewed = renew(card, VALIDITY_END - dt.timedelta(days=3), days=30, quota_mb=5120)

    assert renewed.validity_end == VALIDITY_END + dt.timedelta(days=30)
    assert renewed.status is CardStatus.ACTIVE
    assert renewed.data_quota_mb == 2048 + 5120
    assert renewed.version == card.version + 1


def test_a_renewal_in_grace_extends_from_now_and_makes_the_card_active() -> None:
    in_grace, _ = advance(prepaid_card(), VALIDITY_END + dt.timedelta(days=2), GRACE_DAYS)
    now = VALIDITY_END + dt.timedelta(days=3)

    renewed = renew(in_grace, now, days=7)

    assert in_grace.status is CardStatus.GRACE
    assert renewed.validity_end == now + dt.timedelta(days=7)
    assert renewed.status is CardStatus.ACTIVE


def test_a_renewal_at_the_last_moment_of_grace_is_accepted() -> None:
    renewed = renew(prepaid_card(), GRACE_END - TICK, days=1)

    assert renewed.validity_end == GRACE_END - TICK + dt.timedelta(days=1)


def test_a_reload_adds_credit() -> None:
    renewed = apply_prepaid_renewal(
        prepaid_card(credit=myr(500)),
        at=VALIDITY_END - dt.timedelta(days=1),
        grace_period_days=GRACE_DAYS,
        validity_days=30,
        data_quota_mb=0,
        credit=myr(1_000),
    )

    assert renewed.credit == myr(1_500)


@pytest.mark.parametrize(
    "card",
    [
        prepaid_card(),
        prepaid_card(status=CardStatus.EXPIRED, validity_end=GRACE_END + dt.timedelta(days=30)),
    ],
    ids=["grace ended", "marked expired"],
)
def test_renewing_an_expired_card_is_refused_with_card_expired(card: Card) -> None:
    with pytest.raises(ConflictError) as raised:
        renew(card, GRACE_END)

    assert raised.value.code == "card_expired"
    assert raised.value.retryable is False
    with pytest.raises(ConflictError):
        check_renewable(card, GRACE_END, GRACE_DAYS)


def test_a_postpaid_card_is_always_renewable() -> None:
    check_renewable(postpaid_card(), BILL_DUE_DATE + dt.timedelta(days=400), GRACE_DAYS)


def test_a_prepaid_renewal_of_a_postpaid_card_is_a_bug() -> None:
    with pytest.raises(InvariantError):
        renew(postpaid_card(), BILL_DUE_DATE)


WAIT_PARTS = 1_000_000
# Per renewal: how much of the remaining renewable window to wait (in millionths), validity days,
# quota MB. Waiting less than the whole window keeps the card active or in grace.
renewal_plans = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=WAIT_PARTS - 1),
        st.integers(min_value=1, max_value=365),
        st.integers(min_value=0, max_value=100_000),
    ),
    min_size=1,
    max_size=20,
)


@given(
    plans=renewal_plans,
    start_offset_s=st.integers(min_value=-30 * 86_400, max_value=GRACE_DAYS * 86_400 - 1),
)
def test_chained_renewals_extend_validity_from_the_later_of_now_and_validity_end(
    plans: list[tuple[int, int, int]], start_offset_s: int
) -> None:
    card = prepaid_card(data_quota_mb=2048)
    now = VALIDITY_END + dt.timedelta(seconds=start_offset_s)
    expected_end = VALIDITY_END
    expected_quota_mb = 2048

    for wait_parts, days, quota_mb in plans:
        renewable_until = expected_end + dt.timedelta(days=GRACE_DAYS)
        window_us = (renewable_until - now) // TICK
        now += TICK * (window_us * wait_parts // WAIT_PARTS)
        assert now < renewable_until
        card = renew(card, now, days=days, quota_mb=quota_mb)
        expected_end = max(now, expected_end) + dt.timedelta(days=days)
        expected_quota_mb += quota_mb

    assert card.validity_end == expected_end
    assert card.data_quota_mb == expected_quota_mb
    assert card.status is CardStatus.ACTIVE
    assert card.version == len(plans)
    assert status_at(card, now, GRACE_DAYS) is CardStatus.ACTIVE


@given(days=st.lists(st.integers(min_value=1, max_value=365), min_size=1, max_size=20))
def test_renewals_bought_at_once_while_active_add_up_their_validity(days: list[int]) -> None:
    card = prepaid_card()
    now = VALIDITY_END - dt.timedelta(hours=1)

    for validity_days in days:
        card = renew(card, now, days=validity_days)

    assert card.validity_end == VALIDITY_END + dt.timedelta(days=sum(days))


# -- postpaid --------------------------------------------------------------------------------


def test_a_postpaid_card_is_suspended_once_its_bill_is_overdue() -> None:
    card = postpaid_card()

    assert postpaid_status_at(card, BILL_DUE_DATE - TICK) is CardStatus.ACTIVE
    assert status_at(card, BILL_DUE_DATE, GRACE_DAYS) is CardStatus.SUSPENDED
    suspended, forfeit = advance(card, BILL_DUE_DATE, GRACE_DAYS)
    assert suspended.status is CardStatus.SUSPENDED
    assert forfeit is None


def test_a_postpaid_card_that_owes_nothing_is_never_suspended() -> None:
    card = postpaid_card(bill_due=ZERO, bill_due_date=None)

    assert status_at(card, BILL_DUE_DATE + dt.timedelta(days=400), GRACE_DAYS) is CardStatus.ACTIVE


def test_paying_the_whole_bill_lifts_the_suspension() -> None:
    suspended, _ = advance(postpaid_card(), BILL_DUE_DATE, GRACE_DAYS)
    now = BILL_DUE_DATE + dt.timedelta(days=2)

    paid = apply_bill_payment(suspended, at=now, amount=myr(8_800))

    assert paid.status is CardStatus.ACTIVE
    assert paid.bill_due == ZERO
    assert paid.bill_due_date is None
    assert paid.version == suspended.version + 1
    assert status_at(paid, now + dt.timedelta(days=30), GRACE_DAYS) is CardStatus.ACTIVE


def test_paying_part_of_an_overdue_bill_keeps_the_card_suspended() -> None:
    suspended, _ = advance(postpaid_card(), BILL_DUE_DATE, GRACE_DAYS)

    paid = apply_bill_payment(suspended, at=BILL_DUE_DATE + dt.timedelta(days=1), amount=myr(8_000))

    assert paid.status is CardStatus.SUSPENDED
    assert paid.bill_due == myr(800)
    assert paid.bill_due_date == BILL_DUE_DATE


def test_paying_part_of_a_bill_before_it_is_due_keeps_the_card_active() -> None:
    paid = apply_bill_payment(postpaid_card(), at=BILL_DUE_DATE - TICK, amount=myr(100))

    assert paid.status is CardStatus.ACTIVE
    assert paid.bill_due == myr(8_700)


@given(extra_minor=st.integers(min_value=1, max_value=10**9))
def test_paying_more_than_the_bill_is_a_bug(extra_minor: int) -> None:
    with pytest.raises(InvariantError, match="exceeds"):
        apply_bill_payment(postpaid_card(), at=BILL_DUE_DATE, amount=myr(8_800 + extra_minor))


def test_a_bill_payment_on_a_prepaid_card_is_a_bug() -> None:
    with pytest.raises(InvariantError):
        apply_bill_payment(prepaid_card(), at=VALIDITY_END, amount=myr(1))


def test_a_new_bill_adds_to_what_is_owed_and_keeps_the_earliest_due_date() -> None:
    card = postpaid_card(bill_due=myr(1_000), bill_due_date=BILL_DUE_DATE)

    later = issue_bill(card, amount=myr(500), due_date=BILL_DUE_DATE + dt.timedelta(days=30))
    first = issue_bill(
        postpaid_card(bill_due=ZERO, bill_due_date=None), amount=myr(500), due_date=BILL_DUE_DATE
    )

    assert later.bill_due == myr(1_500)
    assert later.bill_due_date == BILL_DUE_DATE
    assert first.bill_due_date == BILL_DUE_DATE
