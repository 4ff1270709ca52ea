"""The renewal state machine allows exactly its table, always ends, and backs off within bounds."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup.domain.errors import InvariantError
from topup.domain.renewal import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    RenewalStatus,
    Transition,
    backoff_s,
    can_transition,
    transition,
)

S = RenewalStatus
AT = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
STATUSES = sorted(RenewalStatus)
NON_TERMINAL_STATUSES = [status for status in STATUSES if status not in TERMINAL_STATUSES]
# The one loop in the table: a payment can ask the payer to act again after going pending.
# Leaving it is bounded by time (requires_action_timeout_s), not by the graph.
PAYMENT_LOOP = frozenset({S.REQUIRES_ACTION, S.PAYMENT_PENDING})
VISITS_MAX = 5

statuses = st.sampled_from(STATUSES)


def walk(path: list[RenewalStatus]) -> list[Transition]:
    return [
        transition(current, target, at=AT + dt.timedelta(seconds=step), reason=f"step {step}")
        for step, (current, target) in enumerate(itertools.pairwise(path))
    ]


def statuses_reachable_from(start: RenewalStatus) -> set[RenewalStatus]:
    reached: set[RenewalStatus] = set()
    frontier = [start]
    while frontier:
        for target in ALLOWED_TRANSITIONS[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    return reached


@given(current=statuses, target=statuses)
def test_a_transition_succeeds_exactly_when_the_table_allows_it(
    current: RenewalStatus, target: RenewalStatus
) -> None:
    allowed = target in ALLOWED_TRANSITIONS[current]

    assert can_transition(current, target) is allowed
    if allowed:
        recorded = transition(current, target, at=AT, reason="a reason")
        assert recorded == Transition(current, target, AT, "a reason")
    else:
        with pytest.raises(InvariantError, match=f"from {current.value} to {target.value}"):
            transition(current, target, at=AT, reason="a reason")


def test_the_table_names_every_status_and_only_statuses() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(RenewalStatus)
    for targets in ALLOWED_TRANSITIONS.values():
        assert targets <= set(RenewalStatus)


@pytest.mark.parametrize("status", STATUSES)
def test_no_status_transitions_to_itself(status: RenewalStatus) -> None:
    with pytest.raises(InvariantError):
        transition(status, status, at=AT, reason="again")


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_terminal_statuses_have_no_outgoing_transitions(terminal: RenewalStatus) -> None:
    assert terminal.is_terminal
    assert ALLOWED_TRANSITIONS[terminal] == frozenset()
    for target in STATUSES:
        with pytest.raises(InvariantError):
            transition(terminal, target, at=AT, reason="after the end")


def test_statuses_without_outgoing_transitions_are_exactly_the_terminal_ones() -> None:
    dead_ends = {status for status, targets in ALLOWED_TRANSITIONS.items() if not targets}

    assert dead_ends == TERMINAL_STATUSES
    assert {status for status in STATUSES if status.is_terminal} == TERMINAL_STATUSES


@pytest.mark.parametrize("status", NON_TERMINAL_STATUSES)
def test_every_open_status_can_still_reach_a_terminal_status(status: RenewalStatus) -> None:
    assert statuses_reachable_from(status) & TERMINAL_STATUSES


def test_every_status_is_reachable_from_pending_payment() -> None:
    assert statuses_reachable_from(S.PENDING_PAYMENT) == set(RenewalStatus) - {S.PENDING_PAYMENT}


def test_the_only_way_back_to_a_status_is_the_payment_loop() -> None:
    on_a_cycle = {status for status in STATUSES if status in statuses_reachable_from(status)}

    assert on_a_cycle == PAYMENT_LOOP
    assert S.PENDING_PAYMENT not in statuses_reachable_from(S.PENDING_PAYMENT)
    assert S.ACTIVATING not in statuses_reachable_from(S.ACTIVATING)


@pytest.mark.parametrize(
    "path",
    [
        [S.PENDING_PAYMENT, S.ACTIVATING, S.COMPLETED],
        [S.PENDING_PAYMENT, S.REQUIRES_ACTION, S.PAYMENT_PENDING, S.ACTIVATING, S.REFUNDED],
        [S.PENDING_PAYMENT, S.DECLINED],
        [S.PENDING_PAYMENT, S.REQUIRES_ACTION, S.DECLINED],
        [S.PENDING_PAYMENT, S.PAYMENT_PENDING, S.DECLINED],
        [S.PENDING_PAYMENT, S.CANCELLED],
        [S.PENDING_PAYMENT, S.REQUIRES_ACTION, S.CANCELLED],
        # the gateway went quiet, then asked for a step the payer never took (nothing was taken)
        [S.PENDING_PAYMENT, S.PAYMENT_PENDING, S.CANCELLED],
        [S.PENDING_PAYMENT, S.PAYMENT_PENDING, S.REQUIRES_ACTION, S.CANCELLED],
    ],
    ids=lambda path: "->".join(status.value for status in path),
)
def test_the_documented_paths_are_allowed(path: list[RenewalStatus]) -> None:
    recorded = walk(path)

    assert [step.to_status for step in recorded] == path[1:]
    assert [step.from_status for step in recorded] == path[:-1]
    assert recorded[-1].to_status.is_terminal


@pytest.mark.parametrize(
    "current, target",
    [
        (S.ACTIVATING, S.DECLINED),  # money was taken: it can only be refunded
        (S.ACTIVATING, S.CANCELLED),
        (S.ACTIVATING, S.PAYMENT_PENDING),
        (S.PENDING_PAYMENT, S.COMPLETED),  # nothing completes without activation
        (S.PENDING_PAYMENT, S.REFUNDED),  # nothing to refund before capture
        (S.COMPLETED, S.REFUNDED),
        (S.DECLINED, S.ACTIVATING),
    ],
)
def test_transitions_that_would_lose_or_invent_money_are_refused(
    current: RenewalStatus, target: RenewalStatus
) -> None:
    with pytest.raises(InvariantError):
        transition(current, target, at=AT, reason="wrong")


@given(data=st.data(), visits_max=st.integers(min_value=1, max_value=VISITS_MAX))
def test_a_random_walk_from_pending_payment_ends_in_a_terminal_status(
    data: st.DataObject, visits_max: int
) -> None:
    """Each status is left at most ``visits_max`` times (the services bound the payment loop by
    time); the walk never gets stuck and ends in a terminal status it cannot leave."""
    status = S.PENDING_PAYMENT
    departures: Counter[RenewalStatus] = Counter()
    steps = 0
    while not status.is_terminal:
        departures[status] += 1
        targets = sorted(
            target
            for target in ALLOWED_TRANSITIONS[status]
            if departures[target] < visits_max or target.is_terminal
        )
        assert targets, f"the walk is stuck at {status.value}"
        target = data.draw(st.sampled_from(targets), label=f"after {status.value}")
        assert transition(status, target, at=AT, reason="walk").to_status is target
        status = target
        steps += 1
        assert steps <= visits_max * len(NON_TERMINAL_STATUSES)

    assert status in TERMINAL_STATUSES
    leave_to = data.draw(statuses, label="try to leave")
    with pytest.raises(InvariantError):
        transition(status, leave_to, at=AT, reason="after the end")


@given(data=st.data())
def test_a_walk_that_never_revisits_a_status_ends_within_as_many_steps_as_there_are_open_statuses(
    data: st.DataObject,
) -> None:
    status = S.PENDING_PAYMENT
    visited = {status}
    steps = 0
    while not status.is_terminal:
        targets = sorted(ALLOWED_TRANSITIONS[status] - visited)
        assert targets, f"the walk is stuck at {status.value}"
        status = data.draw(st.sampled_from(targets))
        visited.add(status)
        steps += 1

    assert steps <= len(NON_TERMINAL_STATUSES)


# -- backoff ------------------------------------------------------------------------------------

attempts = st.integers(min_value=1, max_value=5_000)
bases_s = st.floats(min_value=0.001, max_value=600.0)
caps_s = st.floats(min_value=0.001, max_value=86_400.0)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def expected_raw_s(attempt: int, base_s: float, cap_s: float) -> float:
    """min(cap, base * 2**(attempt - 1)) computed exactly, without float overflow."""
    grown = Fraction(base_s) * 2 ** (attempt - 1)
    return cap_s if grown >= Fraction(cap_s) else float(grown)


@given(attempt=attempts, base_s=bases_s, cap_s=caps_s, jitter=jitters)
def test_backoff_is_never_above_the_cap_and_stays_within_its_jitter_bounds(
    attempt: int, base_s: float, cap_s: float, jitter: float
) -> None:
    delay_s = backoff_s(attempt=attempt, base_s=base_s, cap_s=cap_s, jitter_fraction=jitter)
    raw_s = expected_raw_s(attempt, base_s, cap_s)

    assert delay_s <= cap_s
    assert raw_s / 2 <= delay_s <= raw_s
    assert delay_s == raw_s * (0.5 + jitter / 2)


@given(attempt=attempts, base_s=bases_s, cap_s=caps_s, jitter=jitters)
def test_backoff_grows_with_the_attempt_and_doubles_until_it_reaches_the_cap(
    attempt: int, base_s: float, cap_s: float, jitter: float
) -> None:
    this_s = backoff_s(attempt=attempt, base_s=base_s, cap_s=cap_s, jitter_fraction=jitter)
    next_s = backoff_s(attempt=attempt + 1, base_s=base_s, cap_s=cap_s, jitter_fraction=jitter)

    assert next_s >= this_s
    if Fraction(base_s) * 2**attempt <= Fraction(cap_s):
        assert next_s == 2 * this_s


def test_backoff_with_the_least_jitter_is_half_the_raw_delay_and_reaches_the_cap() -> None:
    delays_s = [
        backoff_s(attempt=attempt, base_s=2.0, cap_s=600.0, jitter_fraction=0.0)
        for attempt in range(1, 11)
    ]

    assert delays_s == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0]


def test_backoff_for_a_very_late_attempt_is_the_cap_not_an_overflow() -> None:
    delay_s = backoff_s(attempt=10_000, base_s=5.0, cap_s=3600.0, jitter_fraction=0.0)

    assert delay_s == 1800.0


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_backoff_attempts_are_counted_from_one(attempt: int) -> None:
    with pytest.raises(InvariantError, match="from 1"):
        backoff_s(attempt=attempt, base_s=1.0, cap_s=60.0, jitter_fraction=0.5)


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5])
def test_backoff_jitter_outside_zero_to_one_is_a_bug(jitter: float) -> None:
    with pytest.raises(InvariantError, match="jitter"):
        backoff_s(attempt=1, base_s=1.0, cap_s=60.0, jitter_fraction=jitter)
