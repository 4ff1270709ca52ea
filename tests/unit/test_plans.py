"""A plan says why it cannot be bought here and now, and names itself in the reader's language."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from topup.domain.cards import CardKind
from topup.domain.errors import ConflictError
from topup.domain.money import Money
from topup.domain.plans import CHANNELS, Plan, PlanKind

ACTIVE_FROM = dt.datetime(2026, 11, 1, 0, 0, tzinfo=dt.UTC)
ACTIVE_UNTIL = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
DURING = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)

PLAN = Plan(
    code="pack_5gb_7d",
    names={"en": "5 GB for 7 days", "ms": "5 GB untuk 7 hari", "zh_Hans": "7天5GB"},
    kind=PlanKind.PREPAID_PACK,
    price=Money(1_000, "MYR"),
    data_quota_mb=5 * 1024,
    validity_days=7,
    card_kinds=frozenset({CardKind.PREPAID}),
    channels=frozenset({"web", "app", "kiosk"}),
    active_from=ACTIVE_FROM,
    active_until=ACTIVE_UNTIL,
)


def refusal_code(plan: Plan, *, card_kind: CardKind, channel: str, at: dt.datetime) -> str:
    with pytest.raises(ConflictError) as raised:
        plan.check_can_buy(card_kind=card_kind, channel=channel, at=at)
    return raised.value.code


@pytest.mark.parametrize("at", [ACTIVE_FROM, DURING, ACTIVE_UNTIL - TICK])
def test_a_plan_can_be_bought_from_its_first_moment_to_just_before_its_end(at: dt.datetime) -> None:
    assert PLAN.is_on_sale(at)
    PLAN.check_can_buy(card_kind=CardKind.PREPAID, channel="web", at=at)


@pytest.mark.parametrize(
    "at",
    [ACTIVE_FROM - TICK, ACTIVE_FROM - dt.timedelta(days=30), ACTIVE_UNTIL, ACTIVE_UNTIL + TICK],
    ids=["just before start", "a month before", "at its end", "just after its end"],
)
def test_a_plan_outside_its_sale_period_is_not_on_sale(at: dt.datetime) -> None:
    assert not PLAN.is_on_sale(at)
    assert (
        refusal_code(PLAN, card_kind=CardKind.PREPAID, channel="web", at=at) == "plan_not_on_sale"
    )


def test_a_plan_without_a_sale_period_is_always_on_sale() -> None:
    always = replace(PLAN, active_from=None, active_until=None)

    assert always.is_on_sale(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert always.is_on_sale(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def test_a_plan_with_only_an_end_is_on_sale_until_then() -> None:
    until = replace(PLAN, active_from=None)

    assert until.is_on_sale(ACTIVE_FROM - dt.timedelta(days=365))
    assert not until.is_on_sale(ACTIVE_UNTIL)


def test_a_prepaid_plan_is_refused_to_a_postpaid_card() -> None:
    code = refusal_code(PLAN, card_kind=CardKind.POSTPAID, channel="web", at=DURING)

    assert code == "plan_not_for_card_kind"


@pytest.mark.parametrize("channel", sorted(set(CHANNELS) - {"web", "app", "kiosk"}))
def test_a_plan_is_refused_on_a_channel_that_does_not_sell_it(channel: str) -> None:
    code = refusal_code(PLAN, card_kind=CardKind.PREPAID, channel=channel, at=DURING)

    assert code == "plan_not_on_channel"


def test_the_sale_period_is_checked_before_card_kind_and_channel() -> None:
    code = refusal_code(PLAN, card_kind=CardKind.POSTPAID, channel="store", at=ACTIVE_UNTIL)

    assert code == "plan_not_on_sale"


def test_the_card_kind_is_checked_before_the_channel() -> None:
    code = refusal_code(PLAN, card_kind=CardKind.POSTPAID, channel="store", at=DURING)

    assert code == "plan_not_for_card_kind"


def test_a_refusal_is_not_worth_retrying_and_names_the_plan() -> None:
    with pytest.raises(ConflictError) as raised:
        PLAN.check_can_buy(card_kind=CardKind.PREPAID, channel="store", at=DURING)

    assert raised.value.retryable is False
    assert "pack_5gb_7d" in raised.value.message
    assert "store" in raised.value.message


@pytest.mark.parametrize(
    "locale, expected",
    [
        ("ms", "5 GB untuk 7 hari"),
        ("zh_Hans", "7天5GB"),
        ("en", "5 GB for 7 days"),
        ("id", "5 GB for 7 days"),
    ],
)
def test_a_plan_is_named_in_the_locale_asked_for_or_else_in_english(
    locale: str, expected: str
) -> None:
    assert PLAN.name(locale) == expected


def test_a_plan_without_an_english_name_falls_back_to_its_code() -> None:
    plan = replace(PLAN, names={"ms": "5 GB untuk 7 hari"})

    assert plan.name("id") == "pack_5gb_7d"
    assert plan.name("ms") == "5 GB untuk 7 hari"


def test_an_empty_name_counts_as_missing() -> None:
    plan = replace(PLAN, names={"ms": "", "en": ""})

    assert plan.name("ms") == "pack_5gb_7d"
    assert replace(PLAN, names={"ms": "", "en": "Five"}).name("ms") == "Five"


def test_a_plan_without_names_is_called_by_its_code() -> None:
    assert replace(PLAN, names={}).name("en") == "pack_5gb_7d"
