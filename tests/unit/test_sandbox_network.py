"""The sandbox network applies activations after a delay, fails as configured, and replays."""

from __future__ import annotations

import datetime as dt

import pytest

from topup.adapters.network.sandbox import SandboxNetwork
from topup.ports import ProvisionRequest, ProvisionStatus

FIRST_REQUESTED_AT = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.UTC)
DELAY_S = 600.0
ACTIVATION_COUNT = 2_000

APPLIED = ProvisionStatus.APPLIED
IN_PROGRESS = ProvisionStatus.IN_PROGRESS
TRANSIENT_FAILURE = ProvisionStatus.TRANSIENT_FAILURE
PERMANENT_FAILURE = ProvisionStatus.PERMANENT_FAILURE


class MovableClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def provision_request(
    activation_id: str = "act_1", *, attempt: int = 1, msisdn: str = "60123456789"
) -> ProvisionRequest:
    return ProvisionRequest(
        activation_id=activation_id,
        msisdn=msisdn,
        iccid="8960012345678901234",
        plan_code="DATA_30D_10GB",
        data_quota_mb=10_240,
        validity_days=30,
        first_requested_at=FIRST_REQUESTED_AT,
        attempt=attempt,
    )


def after(seconds: float) -> dt.datetime:
    return FIRST_REQUESTED_AT + dt.timedelta(seconds=seconds)


async def test_an_activation_without_delay_is_applied_at_once() -> None:
    network = SandboxNetwork(clock=lambda: FIRST_REQUESTED_AT)

    result = await network.apply(provision_request())

    assert result.status is APPLIED


async def test_an_activation_is_in_progress_until_its_ready_time_then_applied() -> None:
    clock = MovableClock(FIRST_REQUESTED_AT)
    network = SandboxNetwork(activation_delay_s=DELAY_S, clock=clock)

    started = await network.apply(provision_request(attempt=1))
    assert started.status is IN_PROGRESS
    assert started.ready_at is not None
    assert after(DELAY_S) <= started.ready_at <= after(DELAY_S * 1.1)

    clock.now = started.ready_at - dt.timedelta(seconds=1)
    almost = await network.apply(provision_request(attempt=2))
    clock.now = started.ready_at
    done = await network.apply(provision_request(attempt=3))

    assert almost.status is IN_PROGRESS
    assert almost.ready_at == started.ready_at
    assert done.status is APPLIED


async def test_the_jitter_stays_within_a_tenth_of_the_delay_and_replays_per_activation() -> None:
    network = SandboxNetwork(activation_delay_s=DELAY_S, seed=5, clock=lambda: FIRST_REQUESTED_AT)
    replay = SandboxNetwork(activation_delay_s=DELAY_S, seed=5, clock=lambda: FIRST_REQUESTED_AT)

    ready_times = []
    for index in range(200):
        result = await network.apply(provision_request(f"act_{index}"))
        again = await replay.apply(provision_request(f"act_{index}", attempt=2))
        assert result.ready_at is not None
        assert again.ready_at == result.ready_at
        ready_times.append(result.ready_at)

    assert min(ready_times) >= after(DELAY_S)
    assert max(ready_times) <= after(DELAY_S * 1.1)
    assert len(set(ready_times)) > 150


async def test_an_applied_activation_stays_applied_however_often_it_is_asked_again() -> None:
    clock = MovableClock(after(DELAY_S * 2))
    network = SandboxNetwork(
        activation_delay_s=DELAY_S, transient_failure_rate=0.5, seed=1, clock=clock
    )

    checked = 0
    for index in range(200):
        statuses = []
        for attempt in range(1, 11):
            clock.now = after(DELAY_S * 2 + attempt * 60)
            result = await network.apply(provision_request(f"act_{index}", attempt=attempt))
            statuses.append(result.status)
        if APPLIED in statuses:
            first_applied = statuses.index(APPLIED)
            assert set(statuses[first_applied:]) == {APPLIED}
            checked += 1

    assert checked > 190


async def test_transient_failures_hit_about_the_configured_rate_of_first_attempts() -> None:
    network = SandboxNetwork(transient_failure_rate=0.3, seed=2, clock=lambda: FIRST_REQUESTED_AT)

    failures = 0
    for index in range(ACTIVATION_COUNT):
        result = await network.apply(provision_request(f"act_{index}"))
        failures += result.status is TRANSIENT_FAILURE

    assert 0.26 < failures / ACTIVATION_COUNT < 0.34


async def test_a_transient_failure_clears_on_a_later_attempt() -> None:
    network = SandboxNetwork(transient_failure_rate=0.5, seed=2, clock=lambda: FIRST_REQUESTED_AT)

    for index in range(100):
        statuses = [
            (await network.apply(provision_request(f"act_{index}", attempt=attempt))).status
            for attempt in range(1, 31)
        ]
        assert statuses[-1] is APPLIED


async def test_permanent_failures_hit_about_the_configured_rate_and_never_clear() -> None:
    clock = MovableClock(FIRST_REQUESTED_AT)
    network = SandboxNetwork(
        permanent_failure_rate=0.1, transient_failure_rate=0.2, seed=4, clock=clock
    )

    failing = []
    for index in range(ACTIVATION_COUNT):
        result = await network.apply(provision_request(f"act_{index}"))
        if result.status is PERMANENT_FAILURE:
            failing.append(f"act_{index}")

    assert 0.08 < len(failing) / ACTIVATION_COUNT < 0.12
    for activation_id in failing[:50]:
        for attempt in range(2, 8):
            clock.now = after(attempt * 3_600)
            result = await network.apply(provision_request(activation_id, attempt=attempt))
            assert result.status is PERMANENT_FAILURE


async def test_the_same_seed_replays_the_same_failures() -> None:
    def network(seed: int) -> SandboxNetwork:
        return SandboxNetwork(
            transient_failure_rate=0.2,
            permanent_failure_rate=0.1,
            seed=seed,
            clock=lambda: FIRST_REQUESTED_AT,
        )

    async def statuses(sandbox: SandboxNetwork) -> list[ProvisionStatus]:
        return [
            (await sandbox.apply(provision_request(f"act_{index}", attempt=1 + index % 3))).status
            for index in range(500)
        ]

    first = await statuses(network(9))

    assert first == await statuses(network(9))
    assert first != await statuses(network(10))


async def test_a_number_ending_in_four_zeros_always_fails_permanently() -> None:
    network = SandboxNetwork(clock=lambda: FIRST_REQUESTED_AT)

    for attempt in range(1, 5):
        result = await network.apply(provision_request(msisdn="60120000000", attempt=attempt))
        assert result.status is PERMANENT_FAILURE


@pytest.mark.parametrize(
    "options",
    [
        {"transient_failure_rate": 1.5},
        {"permanent_failure_rate": -0.1},
        {"activation_delay_s": -1.0},
        {"latency_s": -1.0},
    ],
)
def test_impossible_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        SandboxNetwork(**options)  # type: ignore[arg-type]
