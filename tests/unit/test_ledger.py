"""Every ledger entry balances per currency; movements are positive; shards are stable."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from topup.domain.errors import InvariantError
from topup.domain.ledger import (
    ACCOUNT_SHARDS,
    Entry,
    EntryKind,
    Posting,
    activation,
    bill,
    capture,
    card_credit_account,
    card_receivable_account,
    check_balanced,
    forfeit,
    opening_credit,
    refund,
    revenue_account,
    shard_of,
    subscriber_amount,
)
from topup.domain.money import Money

RENEWAL_ID = "ren_01HZX"
CARD_ID = "card_1"
GATEWAY = "sandbox"

amounts_minor = st.integers(min_value=-(10**12), max_value=10**12)
positive_minor = st.integers(min_value=1, max_value=10**12)
non_positive_minor = st.integers(min_value=-(10**12), max_value=0)
keys = st.text(min_size=0, max_size=40)


def myr(minor: int) -> Money:
    return Money(minor, "MYR")


def totals_by_currency(postings: tuple[Posting, ...]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.amount.currency] += posting.amount.minor
    return dict(totals)


def balances_by_account(*entries: Entry) -> dict[str, int]:
    balances: dict[str, int] = defaultdict(int)
    for entry in entries:
        for posting in entry.postings:
            balances[posting.account] += posting.amount.minor
    return dict(balances)


def postings_of(amounts: list[int], currency: str = "MYR") -> list[Posting]:
    return [
        Posting(f"account:{index}", Money(minor, currency)) for index, minor in enumerate(amounts)
    ]


def build_every_entry(amount: Money) -> list[Entry]:
    return [
        capture(renewal_id=RENEWAL_ID, card_id=CARD_ID, gateway=GATEWAY, amount=amount),
        activation(
            renewal_id=RENEWAL_ID,
            card_id=CARD_ID,
            destination=card_credit_account(CARD_ID),
            amount=amount,
        ),
        activation(
            renewal_id=RENEWAL_ID,
            card_id=CARD_ID,
            destination=revenue_account(RENEWAL_ID),
            amount=amount,
        ),
        activation(
            renewal_id=RENEWAL_ID,
            card_id=CARD_ID,
            destination=card_receivable_account(CARD_ID),
            amount=amount,
        ),
        refund(renewal_id=RENEWAL_ID, card_id=CARD_ID, gateway=GATEWAY, amount=amount),
        bill(card_id=CARD_ID, bill_id="bill_1", amount=amount),
        forfeit(card_id=CARD_ID, amount=amount, data_quota_mb=512),
        opening_credit(card_id=CARD_ID, amount=amount),
    ]


# -- every builder balances ------------------------------------------------------------------


@given(minor=positive_minor, currency=st.sampled_from(["MYR", "IDR", "JPY", "BHD"]))
def test_every_entry_builder_makes_a_balanced_entry(minor: int, currency: str) -> None:
    amount = Money(minor, currency)

    for entry in build_every_entry(amount):
        assert len(entry.postings) == 2
        assert totals_by_currency(entry.postings) == {currency: 0}
        assert sorted(posting.amount.minor for posting in entry.postings) == [-minor, minor]
        check_balanced(entry.postings)


def test_each_builder_debits_and_credits_the_documented_accounts() -> None:
    amount = myr(1_000)
    entries = {entry.kind: entry for entry in build_every_entry(amount)}
    shard = shard_of(RENEWAL_ID)

    assert entries[EntryKind.CAPTURE].postings == (
        Posting(f"gateway:{GATEWAY}:{shard}", amount),
        Posting(f"activation_pending:{shard}", -amount),
    )
    assert entries[EntryKind.REFUND].postings == (
        Posting(f"activation_pending:{shard}", amount),
        Posting(f"gateway:{GATEWAY}:{shard}", -amount),
    )
    assert entries[EntryKind.BILL].postings == (
        Posting(f"card_receivable:{CARD_ID}", amount),
        Posting(f"revenue:{shard_of('bill_1')}", -amount),
    )
    assert entries[EntryKind.FORFEIT].postings == (
        Posting(f"card_credit:{CARD_ID}", amount),
        Posting(f"forfeited:{shard_of(CARD_ID)}", -amount),
    )
    assert entries[EntryKind.OPENING].postings == (
        Posting(f"opening_balance:{shard_of(CARD_ID)}", amount),
        Posting(f"card_credit:{CARD_ID}", -amount),
    )


def test_an_activation_moves_money_from_pending_to_its_destination() -> None:
    entry = activation(
        renewal_id=RENEWAL_ID,
        card_id=CARD_ID,
        destination=card_credit_account(CARD_ID),
        amount=myr(1_000),
    )

    assert balances_by_account(entry) == {
        f"activation_pending:{shard_of(RENEWAL_ID)}": 1_000,
        f"card_credit:{CARD_ID}": -1_000,
    }
    assert subscriber_amount(balances_by_account(entry)[card_credit_account(CARD_ID)]) == 1_000


def test_a_forfeit_of_zero_credit_is_still_recorded_with_the_quota_lost() -> None:
    entry = forfeit(card_id=CARD_ID, amount=myr(0), data_quota_mb=2048)

    assert totals_by_currency(entry.postings) == {"MYR": 0}
    assert "2048 MB" in entry.memo


@given(minor=st.integers(min_value=-(10**12), max_value=-1))
def test_a_forfeit_of_a_negative_amount_is_a_bug(minor: int) -> None:
    with pytest.raises(InvariantError):
        forfeit(card_id=CARD_ID, amount=myr(minor), data_quota_mb=0)


@given(minor=non_positive_minor)
def test_movements_of_zero_or_negative_amounts_are_bugs(minor: int) -> None:
    amount = myr(minor)
    builders = [
        lambda: capture(renewal_id=RENEWAL_ID, card_id=CARD_ID, gateway=GATEWAY, amount=amount),
        lambda: activation(
            renewal_id=RENEWAL_ID, card_id=CARD_ID, destination="revenue:0", amount=amount
        ),
        lambda: refund(renewal_id=RENEWAL_ID, card_id=CARD_ID, gateway=GATEWAY, amount=amount),
        lambda: bill(card_id=CARD_ID, bill_id="bill_1", amount=amount),
        lambda: opening_credit(card_id=CARD_ID, amount=amount),
    ]

    for build in builders:
        with pytest.raises(InvariantError, match="positive"):
            build()


# -- balance checks --------------------------------------------------------------------------


@given(amounts=st.lists(amounts_minor, min_size=2, max_size=12))
def test_postings_that_do_not_sum_to_zero_are_rejected(amounts: list[int]) -> None:
    assume(sum(amounts) != 0)
    postings = postings_of(amounts)

    with pytest.raises(InvariantError, match="unbalanced"):
        check_balanced(postings)
    with pytest.raises(InvariantError):
        Entry(EntryKind.CAPTURE, tuple(postings), memo="made up")


@given(amounts=st.lists(amounts_minor, min_size=1, max_size=11))
def test_postings_that_sum_to_zero_are_accepted(amounts: list[int]) -> None:
    postings = postings_of([*amounts, -sum(amounts)])

    check_balanced(postings)
    assert Entry(EntryKind.CAPTURE, tuple(postings), memo="balanced").postings == tuple(postings)


@given(minor=amounts_minor)
def test_a_single_posting_is_rejected_even_when_it_is_zero(minor: int) -> None:
    with pytest.raises(InvariantError, match="at least two"):
        check_balanced([Posting("account:0", myr(minor))])


def test_an_entry_without_postings_is_rejected() -> None:
    with pytest.raises(InvariantError):
        Entry(EntryKind.OPENING, (), memo="nothing")


@given(
    ringgit=st.lists(amounts_minor, min_size=1, max_size=5),
    rupiah=st.lists(amounts_minor, min_size=1, max_size=5),
    order=st.randoms(use_true_random=False),
)
def test_postings_in_two_currencies_balanced_in_each_are_accepted(
    ringgit: list[int], rupiah: list[int], order: random.Random
) -> None:
    postings = postings_of([*ringgit, -sum(ringgit)], "MYR") + postings_of(
        [*rupiah, -sum(rupiah)], "IDR"
    )
    order.shuffle(postings)

    check_balanced(postings)


@given(
    ringgit=st.lists(amounts_minor, min_size=1, max_size=5),
    rupiah=st.lists(amounts_minor, min_size=1, max_size=5),
    error_minor=st.integers(min_value=1, max_value=10**6),
)
def test_postings_unbalanced_in_one_currency_are_rejected_even_if_the_grand_total_is_zero(
    ringgit: list[int], rupiah: list[int], error_minor: int
) -> None:
    # MYR is off by +error and IDR by -error: the plain sum is zero, each currency is not.
    postings = postings_of([*ringgit, -sum(ringgit) + error_minor], "MYR") + postings_of(
        [*rupiah, -sum(rupiah) - error_minor], "IDR"
    )
    assert sum(posting.amount.minor for posting in postings) == 0

    with pytest.raises(InvariantError, match="unbalanced"):
        check_balanced(postings)


# -- shards ----------------------------------------------------------------------------------


@given(key=keys)
def test_a_key_always_lands_in_the_same_shard_within_range(key: str) -> None:
    shard = shard_of(key)

    assert shard == shard_of(key)
    assert 0 <= shard < ACCOUNT_SHARDS


def test_shards_do_not_change_between_releases() -> None:
    # Balances are stored per shard account: moving a key to another shard would split them.
    assert [shard_of(key) for key in ["", "ren_1", "card_1", "bill_1"]] == [14, 2, 5, 12]


def test_keys_spread_over_every_shard() -> None:
    assert {shard_of(f"ren_{number}") for number in range(1_000)} == set(range(ACCOUNT_SHARDS))


@given(
    renewal_id=keys, gateway=st.sampled_from(["sandbox", "stripe", "ipay88"]), minor=positive_minor
)
def test_a_refund_reverses_its_capture_on_the_same_shard_accounts(
    renewal_id: str, gateway: str, minor: int
) -> None:
    amount = myr(minor)
    captured = capture(renewal_id=renewal_id, card_id=CARD_ID, gateway=gateway, amount=amount)
    refunded = refund(renewal_id=renewal_id, card_id=CARD_ID, gateway=gateway, amount=amount)

    assert {posting.account for posting in captured.postings} == {
        posting.account for posting in refunded.postings
    }
    assert all(balance == 0 for balance in balances_by_account(captured, refunded).values())
    assert captured.renewal_id == refunded.renewal_id == renewal_id


@given(renewal_id=keys, minor=positive_minor)
def test_capture_then_activation_leaves_nothing_pending(renewal_id: str, minor: int) -> None:
    amount = myr(minor)
    captured = capture(renewal_id=renewal_id, card_id=CARD_ID, gateway=GATEWAY, amount=amount)
    activated = activation(
        renewal_id=renewal_id,
        card_id=CARD_ID,
        destination=card_credit_account(CARD_ID),
        amount=amount,
    )

    balances = balances_by_account(captured, activated)
    assert balances[f"activation_pending:{shard_of(renewal_id)}"] == 0
    assert subscriber_amount(balances[card_credit_account(CARD_ID)]) == minor
