"""A sandbox mobile network: deterministic, stateless, safe for demos and tests.

Every answer is derived from the ``ProvisionRequest``, the constructor arguments and the clock, so
a CLI and a worker agree about an activation without sharing memory.

How an activation turns out, checked in this order:

1. **Permanent failure** when the MSISDN ends in ``0000`` (handy for demos), or for a fraction
   ``permanent_failure_rate`` of activations chosen by a hash of ``(seed, activation_id)``. Such an
   activation fails on every attempt.
2. **Transient failure** for a fraction ``transient_failure_rate`` of attempts, chosen by a hash of
   ``(seed, activation_id, attempt)``. Attempts are numbered from 1. Once an attempt gets through,
   every later attempt gets through too, so an activation answered ``applied`` stays applied.
3. **In progress** until ``first_requested_at + activation_delay_s`` plus a jitter of up to 10 %
   of the delay (a hash of ``(seed, activation_id)``); the answer carries ``ready_at``.
4. **Applied** from then on, however often it is asked again (``activation_id`` is the
   idempotency key).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable

from topup.ports import DataAccessRequest, ProvisionRequest, ProvisionResult, ProvisionStatus

PERMANENT_FAILURE_MSISDN_SUFFIX = "0000"
ACTIVATION_JITTER_FRACTION_MAX = 0.1


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _unit_interval(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts``; the same parts give the same number."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {rate}")


class SandboxNetwork:
    """A deterministic, stateless NetworkProvisioner. See the module docstring for its rules."""

    def __init__(
        self,
        *,
        activation_delay_s: float = 0.0,
        transient_failure_rate: float = 0.0,
        permanent_failure_rate: float = 0.0,
        seed: int = 0,
        latency_s: float = 0.0,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if activation_delay_s < 0:
            raise ValueError("activation_delay_s must not be negative")
        if latency_s < 0:
            raise ValueError("latency_s must not be negative")
        _check_rate("transient_failure_rate", transient_failure_rate)
        _check_rate("permanent_failure_rate", permanent_failure_rate)
        self._activation_delay_s = activation_delay_s
        self._transient_failure_rate = transient_failure_rate
        self._permanent_failure_rate = permanent_failure_rate
        self._seed = seed
        self._latency_s = latency_s
        self._clock = clock
        # Usage (issue 11): the data bar of each card it was told of, by MSISDN (what a real
        # network's policy server holds); memory only, for tests and demos to read.
        self.data_barred: dict[str, bool] = {}

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        if request.msisdn.endswith(PERMANENT_FAILURE_MSISDN_SUFFIX):
            return ProvisionResult(
                status=ProvisionStatus.PERMANENT_FAILURE,
                message="The sandbox network refuses numbers ending in 0000.",
            )
        if self._fails_permanently(request.activation_id):
            return ProvisionResult(
                status=ProvisionStatus.PERMANENT_FAILURE,
                message="The sandbox network cannot apply this renewal to the card.",
            )
        if self._fails_transiently(request.activation_id, request.attempt):
            return ProvisionResult(
                status=ProvisionStatus.TRANSIENT_FAILURE,
                message="The sandbox network is busy; try again later.",
            )
        ready_at = self.ready_at(request)
        if self._clock() < ready_at:
            return ProvisionResult(status=ProvisionStatus.IN_PROGRESS, ready_at=ready_at)
        return ProvisionResult(status=ProvisionStatus.APPLIED, ready_at=ready_at)

    async def set_data_access(self, request: DataAccessRequest) -> ProvisionResult:
        """Bar or restore a card's data at once (``request_id`` makes a repeat harmless); a
        transient failure for a fraction ``transient_failure_rate`` of requests, as above."""
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        if self._fails_transiently(request.request_id, request.attempt):
            return ProvisionResult(
                status=ProvisionStatus.TRANSIENT_FAILURE,
                message="The sandbox network is busy; try again later.",
            )
        self.data_barred[request.msisdn] = request.data_barred
        return ProvisionResult(status=ProvisionStatus.APPLIED, ready_at=self._clock())

    def ready_at(self, request: ProvisionRequest) -> dt.datetime:
        """When the network completes this activation, if it does not fail."""
        jitter = ACTIVATION_JITTER_FRACTION_MAX * _unit_interval(
            "jitter", self._seed, request.activation_id
        )
        delay_s = self._activation_delay_s * (1.0 + jitter)
        return request.first_requested_at + dt.timedelta(seconds=delay_s)

    def _fails_permanently(self, activation_id: str) -> bool:
        draw = _unit_interval("permanent", self._seed, activation_id)
        return draw < self._permanent_failure_rate

    def _fails_transiently(self, activation_id: str, attempt: int) -> bool:
        """True while every attempt so far, this one included, drew a transient failure."""
        for earlier in range(1, max(attempt, 1) + 1):
            draw = _unit_interval("transient", self._seed, activation_id, earlier)
            if draw >= self._transient_failure_rate:
                return False
        return True
